"""Analyses of a recorded run: group views by class, example-level scores, and Dask reductions of large stores.

``offline`` imports Dask inside its functions: ``from responsibility.analysis import offline`` needs no Dask.
"""

from responsibility.analysis import offline
from responsibility.analysis.groups import class_share, diagonal_dominance, group_responsibility, interclass_matrix
from responsibility.analysis.scores import (
    class_agreement,
    held_out_loss,
    label_push,
    recorded_inputs,
    self_responsibility,
)

__all__ = [
    "class_agreement",
    "class_share",
    "diagonal_dominance",
    "group_responsibility",
    "held_out_loss",
    "interclass_matrix",
    "label_push",
    "offline",
    "recorded_inputs",
    "self_responsibility",
]
