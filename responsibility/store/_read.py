"""Reading R: whole or selected columns, column blocks within a budget, top-k, and step windows of epochs.

Whatever part of the journal is not folded yet is summed on the fly for just the requested columns, so every
read works before, during and after a fold. Only this module decides whether the stored top-k index can answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from responsibility.choices import Sign, check_choice
from responsibility.errors import BudgetError
from responsibility.kernels import topk_desc
from responsibility.progress import bar
from responsibility.store._accumulate import accumulate, block_width, signed
from responsibility.store._journal import Journal
from responsibility.store._memory import zeros
from responsibility.store.spec import ParamSpec

DEFAULT_READ_BUDGET = 4 << 30
Columns = slice | np.ndarray


def check_sign(sign: str) -> None:
    check_choice("sign", sign, Sign)


def check_weights(weights: Sequence[int] | np.ndarray, p: ParamSpec) -> np.ndarray:
    idx = np.asarray(weights)
    if idx.ndim == 1 and not len(idx):
        return np.zeros(0, np.int64)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError("weights must be a 1-D sequence of flat integer indices")
    if len(idx) and (idx.min() < 0 or idx.max() >= p.units):
        raise IndexError(f"weights index outside [0, {p.units}) for {p.name!r}")
    return idx.astype(np.int64)


def check_window(journal: Journal, steps: tuple[int, int] | None) -> tuple[int, int] | None:
    if steps is None:
        return None
    start, stop = (int(s) for s in steps)
    if not 0 <= start <= stop <= journal.state.steps:
        raise IndexError(f"steps [{start}, {stop}) outside the committed journal [0, {journal.state.steps})")
    return start, stop


def _as_columns(idx: np.ndarray) -> Columns:
    """A consecutive run reads as a slice: plain (not orthogonal) chunk reads, no gathers in the fold."""
    if len(idx) and bool(np.all(np.diff(idx) == 1)):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def read(
    journal: Journal,
    name: str,
    sign: Sign,
    weights: Sequence[int] | np.ndarray | None,
    steps: tuple[int, int] | None,
    max_bytes: int,
) -> np.ndarray:
    check_sign(sign)
    state = journal.state
    p = state.spec.param(name)
    cols: Columns
    if weights is None:
        cols, ncols = slice(0, p.units), p.units
    else:
        idx = check_weights(weights, p)
        cols, ncols = _as_columns(idx), len(idx)
    need = state.num_examples * ncols * 4 * 3
    if need > max_bytes:
        raise BudgetError(
            f"{state.path}: reading R of {name!r} needs ~{need / 2**30:.1f} GiB "
            f"(> max_bytes={max_bytes / 2**30:.1f} GiB); select columns with weights=..., or raise max_bytes"
        )
    window = check_window(journal, steps)
    pos, neg = state.after_newer_commit(lambda: pos_neg(journal, p, cols, ncols, max_bytes, window))
    out = signed(pos, neg, sign).numpy()
    return out.reshape(state.num_examples, *p.r_shape) if weights is None else out


def pos_neg(
    journal: Journal,
    p: ParamSpec,
    cols: Columns,
    ncols: int,
    budget: int,
    window: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """R_pos and R_neg of columns ``cols`` (float32 tensors), from the fold and the journal after it."""
    state, arrays = journal.state, journal.arrays
    # A window is summed from the journal alone; otherwise the fold (if any) plus the journal after it.
    start, stop = window if window is not None else (state.folded_steps(p.name), state.steps)
    # A lossy fold is used only when current; otherwise R is summed afresh from the journal in float32.
    if window is None and start and not state.exact_r and start < stop:
        start = 0
    if window is None and start:
        parts = [arrays.read(arrays.fold(p.name, s), slice(None), cols) for s in ("pos", "neg")]
        pos, neg = (torch.from_numpy(np.ascontiguousarray(r, dtype=np.float32)) for r in parts)
    else:
        pos, neg = zeros(state.num_examples, ncols), zeros(state.num_examples, ncols)
    accumulate(journal, p, cols, start, stop, pos, neg, budget)
    return pos, neg


def parts(
    journal: Journal,
    p: ParamSpec,
    budget_bytes: int,
    window: tuple[int, int] | None = None,
    columns: np.ndarray | None = None,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """``(positions, R_pos, R_neg)`` blocks of ``columns`` (sorted indices; None: all), within a budget.

    ``positions`` slices the column list (with ``columns=None``, the parameter's columns themselves).
    """
    total = p.units if columns is None else len(columns)
    # Per column: both parts, a signed copy and scratch for a consumer's top-k.
    width = block_width(
        total, journal.state.num_examples * (4 * 3 + 8), budget_bytes, journal.state.layout.r_chunk_units
    )
    # A bar appears only for reads that last (delay), e.g. group sums over a large parameter.
    with bar(total=total, desc=f"R of {p.name}", unit="col", unit_scale=True, delay=2.0) as shown:
        for c0 in range(0, total, width):
            at = slice(c0, min(total, c0 + width))
            cols = at if columns is None else _as_columns(columns[at])
            yield at, *pos_neg(journal, p, cols, at.stop - at.start, budget_bytes, window)
            shown.update(at.stop - at.start)


def topk_index(
    journal: Journal, name: str, sign: Sign, columns: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    check_sign(sign)
    state, arrays = journal.state, journal.arrays
    state.spec.param(name)
    if (
        not (state.steps > 0 and state.folded_steps(name) == state.steps)
        or min(state.layout.topk, state.num_examples) == 0
        or sign not in state.layout.topk_signs
    ):
        return None
    sel: Any = np.s_[:] if columns is None else (slice(None), np.asarray(columns, dtype=np.int64))
    orth = columns is not None
    ids = arrays.get(arrays.fold(name, f"top_{sign}_ids"), sel, orthogonal=orth)
    vals = arrays.get(arrays.fold(name, f"top_{sign}_values"), sel, orthogonal=orth)
    return ids, vals


def most_responsible(
    journal: Journal,
    name: str,
    k: int,
    sign: Sign,
    weights: Sequence[int] | np.ndarray | None,
    budget_bytes: int,
) -> tuple[np.ndarray, np.ndarray]:
    check_sign(sign)
    state = journal.state
    p = state.spec.param(name)
    if not 1 <= k <= state.num_examples:
        raise ValueError(f"k must be in [1, {state.num_examples}], got {k}")
    columns = inverse = None
    if weights is not None:
        columns, inverse = np.unique(check_weights(weights, p), return_inverse=True)
        if not len(columns):
            return np.empty((k, 0), np.int64), np.empty((k, 0), np.float32)
    deep_enough = k <= min(state.layout.topk, state.num_examples)
    index = topk_index(journal, name, sign, columns) if deep_enough else None
    if index is not None:
        ids, vals = index[0][:k], index[1][:k]
    else:
        total = p.units if columns is None else len(columns)
        ids = np.empty((k, total), np.int64)
        vals = np.empty((k, total), np.float32)
        for at, pos, neg in parts(journal, p, budget_bytes, columns=columns):
            bi, bv = topk_desc(signed(pos, neg, sign), k)
            ids[:, at], vals[:, at] = bi.numpy(), bv.numpy()
    if inverse is not None:
        return ids[:, inverse], vals[:, inverse]
    return ids.reshape(k, *p.r_shape), vals.reshape(k, *p.r_shape)


def epoch_steps(journal: Journal, epochs: int | Sequence[int]) -> tuple[int, int]:
    wanted = [epochs] if isinstance(epochs, (int, np.integer)) else list(epochs)
    recorded = journal.meta()[:, 1]
    if not len(recorded):
        raise ValueError(f"{journal.state.path} has no committed steps")
    if not wanted:
        raise ValueError("epoch_steps needs at least one epoch")
    last = int(recorded.max())
    chosen = sorted({int(e) + last + 1 if e < 0 else int(e) for e in wanted})
    if chosen != list(range(chosen[0], chosen[-1] + 1)):
        raise ValueError(f"epochs {wanted} are not consecutive")
    inside = np.flatnonzero((recorded >= chosen[0]) & (recorded <= chosen[-1]))
    if not len(inside):
        raise ValueError(f"epochs {wanted} are not in the journal (it holds epochs {int(recorded.min())}..{last})")
    return int(inside[0]), int(inside[-1]) + 1
