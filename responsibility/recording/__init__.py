"""The training-time half, framework-free: which parameters to track, example ids, the hot-path recorder,
per-example gradient capture, and the session that runs them with the store's policies (resume, overwrite,
storage failures, the final fold). The Lightning callback (:mod:`responsibility.callbacks`) is a thin adapter over
:class:`RecordingSession`; a plain PyTorch loop uses it directly.
"""

from responsibility.recording.ids import SamplerIdTracker, as_ids, check_ids, dataset_labels, ids_from_batch
from responsibility.recording.per_example import ExampleGradients, default_rule, example_form
from responsibility.recording.recorder import Recorder
from responsibility.recording.selection import select_parameters
from responsibility.recording.session import RecordingSession

__all__ = [
    "ExampleGradients",
    "Recorder",
    "RecordingSession",
    "SamplerIdTracker",
    "as_ids",
    "check_ids",
    "dataset_labels",
    "default_rule",
    "example_form",
    "ids_from_batch",
    "select_parameters",
]
