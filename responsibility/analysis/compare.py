"""Comparing two runs on the same data: before and after a curation, or two seeds.

- :func:`compare_predictions`: accuracy overall and per class of runs A and B on the same test inputs, the inputs
  B fixed (wrong in A, right in B) and broke (right in A, wrong in B), and the 2×2 table of (A right, A wrong) ×
  (B right, B wrong): DeepFuse's record-by-record comparison of an original and a steered model.
- :func:`score_shift`: how examples' scores moved between the runs, as raw values and as percentiles within each
  run (raw scores of two runs are on different scales; a percentile of 1 is the top of the ranking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from responsibility.evaluation.metrics import rankdata

__all__ = ["PredictionComparison", "compare_predictions", "score_shift"]


@dataclass
class PredictionComparison:
    """Both runs' predictions on the same labelled inputs; see :func:`compare_predictions`."""

    accuracy_a: float
    accuracy_b: float
    per_class_a: np.ndarray  # (classes,), NaN for a class with no input
    per_class_b: np.ndarray
    counts: np.ndarray  # inputs per true class
    table: np.ndarray  # (2, 2): rows A right/wrong, columns B right/wrong
    fixed: np.ndarray  # input indices wrong in A, right in B
    broken: np.ndarray  # right in A, wrong in B
    changed: np.ndarray  # predicted class differs between the runs

    def to_json(self) -> dict[str, Any]:
        def floats(a: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else float(v) for v in a]

        return {
            "accuracy_a": self.accuracy_a,
            "accuracy_b": self.accuracy_b,
            "per_class_a": floats(self.per_class_a),
            "per_class_b": floats(self.per_class_b),
            "counts": self.counts.tolist(),
            "table": self.table.tolist(),
            "fixed": self.fixed.tolist(),
            "broken": self.broken.tolist(),
            "changed": self.changed.tolist(),
        }


def compare_predictions(
    labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray, num_classes: int
) -> PredictionComparison:
    """Compare two runs' predicted classes on inputs with true ``labels`` (all ``(n,)`` integer arrays)."""
    y, a, b = (np.asarray(v, dtype=np.int64) for v in (labels, predicted_a, predicted_b))
    if not y.ndim == 1 or a.shape != y.shape or b.shape != y.shape:
        raise ValueError(f"labels and both predictions must be 1-D of one length, got {y.shape}, {a.shape}, {b.shape}")
    if not len(y):
        raise ValueError("no inputs to compare")
    for name, v in (("labels", y), ("predicted_a", a), ("predicted_b", b)):
        if v.min() < 0 or v.max() >= num_classes:
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}")
    right_a, right_b = a == y, b == y
    counts = np.bincount(y, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_a = np.bincount(y, weights=right_a, minlength=num_classes) / counts
        per_b = np.bincount(y, weights=right_b, minlength=num_classes) / counts
    table = np.array(
        [
            [np.sum(right_a & right_b), np.sum(right_a & ~right_b)],
            [np.sum(~right_a & right_b), np.sum(~right_a & ~right_b)],
        ]
    )
    return PredictionComparison(
        accuracy_a=float(right_a.mean()),
        accuracy_b=float(right_b.mean()),
        per_class_a=per_a,
        per_class_b=per_b,
        counts=counts,
        table=table,
        fixed=np.flatnonzero(~right_a & right_b),
        broken=np.flatnonzero(right_a & ~right_b),
        changed=np.flatnonzero(a != b),
    )


def percentiles(scores: np.ndarray) -> np.ndarray:
    """Each score's place in its own ranking: 0 = the lowest, 1 = the highest (ties share their average place)."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) < 2:
        return np.ones(len(s))
    return (rankdata(s) - 1) / (len(s) - 1)


def score_shift(ids: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> dict[str, list[float]]:
    """Scores of examples ``ids`` in runs A and B, raw and as percentiles within each run's whole ranking."""
    ids = np.asarray(ids, dtype=np.int64)
    sa, sb = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if sa.shape != sb.shape or sa.ndim != 1:
        raise ValueError(f"both runs need one score per example, got shapes {sa.shape} and {sb.shape}")
    if len(ids) and (ids.min() < 0 or ids.max() >= len(sa)):
        raise ValueError(f"example ids must lie in [0, {len(sa)})")
    return {
        "a": sa[ids].tolist(),
        "b": sb[ids].tolist(),
        "percentile_a": percentiles(sa)[ids].tolist(),
        "percentile_b": percentiles(sb)[ids].tolist(),
    }
