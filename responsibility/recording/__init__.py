"""The training-time half, framework-free: which parameters to track, example ids, the hot-path recorder and
per-example gradient capture. The Lightning callback (:mod:`responsibility.callbacks`) is a thin adapter over it.
"""

from responsibility.recording.ids import SamplerIdTracker, as_ids, check_ids, dataset_labels, ids_from_batch
from responsibility.recording.per_example import ExampleGradients, default_rule, example_form
from responsibility.recording.recorder import Recorder
from responsibility.recording.selection import select_parameters

__all__ = [
    "ExampleGradients",
    "Recorder",
    "SamplerIdTracker",
    "as_ids",
    "check_ids",
    "dataset_labels",
    "default_rule",
    "example_form",
    "ids_from_batch",
    "select_parameters",
]
