"""How well each explanation names the patched training images: per test input, then summarised."""

from __future__ import annotations

from typing import Any

import numpy as np

from responsibility.evaluation.shortcut import COMPOSITION, auprc_rows, precision_at_k, topk_composition

__all__ = ["base_rates", "shortcut_metrics", "summaries"]


def shortcut_metrics(
    scores: np.ndarray,
    patched: np.ndarray,
    labels: np.ndarray,
    shortcut_class: int,
    ks: list[int],
    composition_k: int | None = None,
) -> dict[str, np.ndarray]:
    """Per test input (rows of ``scores``, (n_test, N)): AUPRC against ``patched`` over all training examples,
    within ``shortcut_class`` and within the other classes (absent where the mask marks none or all there),
    precision@k for each k, and (``composition_k``) what the top k are made of, as ``top<k>_<part>``."""
    in_class = labels == shortcut_class
    out = {"auprc": auprc_rows(scores, patched)}
    for name, among in (("auprc_in_class", in_class), ("auprc_other_classes", ~in_class)):
        marked = patched[among]
        if marked.any() and not marked.all():
            out[name] = auprc_rows(scores, patched, among)
    for k in ks:
        out[f"precision@{k}"] = precision_at_k(scores, patched, k)
    if composition_k is not None:
        parts = topk_composition(scores, patched, in_class, composition_k)
        out |= {f"top{composition_k}_{name}": v for name, v in parts.items()}
    return out


def base_rates(patched: np.ndarray, labels: np.ndarray, shortcut_class: int) -> dict[str, float]:
    """What a random ranking scores in expectation: the share of patched examples (overall, in class, others),
    and the share of each part of :data:`~responsibility.evaluation.shortcut.COMPOSITION` in the training set."""
    in_class = labels == shortcut_class
    parts = (patched & in_class, ~patched & in_class, patched & ~in_class, ~patched & ~in_class)
    return {
        "all": float(patched.mean()),
        "in_class": float(patched[in_class].mean()),
        "other_classes": float(patched[~in_class].mean()) if (~in_class).any() else float("nan"),
    } | {name: float(part.mean()) for name, part in zip(COMPOSITION, parts, strict=True)}


def summaries(
    per_input: dict[str, dict[str, np.ndarray]], kinds: dict[str, str], subsets: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """One row per (subset of test inputs, method): each metric's mean over the subset (None when it is empty)."""
    rows = []
    for subset, rows_mask in subsets.items():
        for method, metrics in per_input.items():
            row: dict[str, Any] = {"subset": subset, "n_test": int(rows_mask.sum()), "method": method}
            row["kind"] = kinds[method]
            for name, values in metrics.items():
                row[name] = float(values[rows_mask].mean()) if rows_mask.any() else None
            rows.append(row)
    return rows
