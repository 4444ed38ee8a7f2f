"""Metrics for finding mislabelled training data from a ranking score (higher = inspect first)."""

from __future__ import annotations

import numpy as np


def detection_curve(scores: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """Fraction of flipped examples found after inspecting the top 1..N examples (ties: smaller id first)."""
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.asarray(flipped, dtype=np.int64)] = True
    if not mask.any():
        raise ValueError("no flipped examples: detection is undefined")
    order = np.argsort(-scores, kind="stable")
    return np.cumsum(mask[order]) / mask.sum()


def recall_at(scores: np.ndarray, flipped: np.ndarray, fraction: float) -> float:
    """Fraction of flipped examples among the top ``fraction`` of the ranking."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    curve = detection_curve(scores, flipped)
    return float(curve[max(1, int(round(fraction * len(curve)))) - 1])


def mislabel_auc(scores: np.ndarray, flipped: np.ndarray) -> float:
    """Area under the cumulative detection curve divided by N (quanda's mislabeling-detection score); random ≈ 0.5."""
    return float(detection_curve(scores, flipped).mean())
