"""Per-example share math: each example's part of its step's Δw, and per-example gradients from journaled factors.

See :mod:`responsibility.recording.per_example` for the rules and how the factors are captured in training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from responsibility.store.spec import ParamSpec


def shares(
    delta: torch.Tensor | None,
    grads: torch.Tensor,
    row_of_id: torch.Tensor,
    counts: torch.Tensor,
    rule: str,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each example's share of its step's Δw: ``(M, P)`` from ``delta`` ``(T, P)`` and ``grads`` ``(M, P)``.

    Example row j belongs to step ``row_of_id[j]``; ``counts`` (T,) is the number of examples of each step. A
    derived journal's steps (rule "gradient") give ``scale`` (T,) instead, c with Δw = c · Σ_j g_j, so the share is
    ``c · g_j``: ``delta`` is zero at those steps (None when all are), ``scale`` zero at the others.
    """
    derived = None if scale is None else grads * scale[row_of_id].unsqueeze(1)
    if delta is None:
        if derived is None:
            raise ValueError("shares need the steps' Δw or their scales")
        return derived
    weight = grads.abs() if rule == "magnitude" else grads
    denom = torch.zeros_like(delta).index_add_(0, row_of_id, weight)
    scale = delta / denom
    usable = torch.isfinite(scale)  # denom == 0, or so small that the ratio overflows
    scale = torch.where(usable, scale, torch.zeros((), dtype=scale.dtype))
    even = torch.where(usable, torch.zeros((), dtype=delta.dtype), delta / counts.to(delta.dtype).unsqueeze(1))
    share = scale[row_of_id].mul_(weight)
    # Usually no weight that moved lacks a gradient, and adding zeros is two passes over (M, P) for nothing.
    if bool(even.any()):
        share.add_(even[row_of_id])
    return share if derived is None else share.add_(derived)


def example_grads(p: ParamSpec, values: dict[str, torch.Tensor], cols: slice | np.ndarray) -> torch.Tensor:
    """Per-example gradients of flat weights ``cols`` of ``p`` from its journaled values: ``(M, len(cols))``.

    ``values`` holds the journaled columns by kind, already restricted as :func:`needed_columns` says.
    """
    if p.example_form != "outer":
        return values["grad"]
    out_idx, in_idx = _outer_indices(p, cols)
    out_sel, in_sel = _compact(out_idx), _compact(in_idx)
    width = p.shape[1]
    if isinstance(cols, slice) and isinstance(out_sel, slice) and isinstance(in_sel, slice):
        # A run of flat weights: whole rows (plus partial edge rows) of the outer product, by broadcasting
        # instead of two gathers. Same products, so the same floats.
        if out_sel.stop - out_sel.start == 1:
            return values["out"] * values["in"]
        if in_sel == slice(0, width):
            rows = (values["out"].unsqueeze(2) * values["in"].unsqueeze(1)).flatten(1)
            first = cols.start - out_sel.start * width
            return rows[:, first : first + (cols.stop - cols.start)]
    return values["out"][:, _local(out_idx, out_sel)] * values["in"][:, _local(in_idx, in_sel)]


def needed_columns(p: ParamSpec, cols: slice | np.ndarray) -> dict[str, slice | np.ndarray]:
    """The journaled columns (relative to the parameter's own) that :func:`example_grads` needs for ``cols``."""
    if p.example_form != "outer":
        return {"grad": cols}
    out_idx, in_idx = _outer_indices(p, cols)
    return {"out": _compact(out_idx), "in": _compact(in_idx)}


def _outer_indices(p: ParamSpec, cols: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = np.arange(cols.start, cols.stop) if isinstance(cols, slice) else np.asarray(cols, dtype=np.int64)
    return flat // p.shape[1], flat % p.shape[1]


def _compact(idx: np.ndarray) -> slice | np.ndarray:
    """A slice covering ``idx`` when its distinct values are contiguous, else the sorted distinct values."""
    uniq = np.unique(idx)
    if len(uniq) == 0:
        return slice(0, 0)
    if uniq[-1] - uniq[0] + 1 == len(uniq):
        return slice(int(uniq[0]), int(uniq[-1]) + 1)
    return uniq


def _local(idx: np.ndarray, sel: slice | np.ndarray) -> torch.Tensor:
    local = idx - sel.start if isinstance(sel, slice) else np.searchsorted(sel, idx)
    return torch.from_numpy(np.ascontiguousarray(local, dtype=np.int64))
