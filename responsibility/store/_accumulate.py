"""The one journal -> R accumulation path, shared by the fold, lazy reads and step-window reads.

R_pos[m, c] += the positive part of the journaled Δw of column c at every step whose batch holds example m
(scaled by 1/batch for ``batch_share="mean"``). A parameter recorded per example adds each example's own share
instead: formed here from the journaled gradients and Δw, or, at neuron granularity ("units" form), journaled
already summed per unit.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from responsibility.kernels import FoldKernel, index_add_fold, split_signed, step_groups
from responsibility.kernels.shares import example_grads, needed_columns, shares
from responsibility.store._journal import Membership
from responsibility.store._state import StoreState
from responsibility.store.spec import ParamSpec


class JournalSource(Protocol):
    """What the accumulation reads: the stored :class:`Journal`, or a block of it still in memory
    (:class:`responsibility.store._running.RunningSums` sums each block the recorder writes)."""

    @property
    def state(self) -> StoreState: ...

    def row_block(self, steps: slice, cols: slice | np.ndarray, scales: np.ndarray | None = None) -> np.ndarray: ...

    def members(self, start: int, stop: int) -> Membership: ...

    def scales(self, start: int, stop: int) -> np.ndarray | None: ...

    def example_block(self, lo: int, hi: int, cols: slice | np.ndarray) -> np.ndarray: ...


def accumulate(
    journal: JournalSource,
    p: ParamSpec,
    cols: slice | np.ndarray,
    start: int,
    stop: int,
    acc_pos: torch.Tensor,
    acc_neg: torch.Tensor,
    budget: int,
    kernel: FoldKernel = index_add_fold,
    members: Membership | None = None,
) -> None:
    """Fold journal steps ``[start, stop)`` of columns ``cols`` of ``p`` into the accumulators.

    The accumulators' device is where the fold runs: journal blocks are moved there as they are read.
    """
    device = acc_pos.device
    if stop <= start:
        return
    spec, layout, read = journal.state.spec, journal.state.layout, journal.row_block
    kinds = spec.journal_columns()[p.name]
    ncols = acc_pos.shape[1]
    members = members or journal.members(start, stop)
    ids_all, counts_all, offsets, first = members.window(start, stop)
    per_example = p.example_form in ("outer", "dense")  # shares formed here
    units = p.example_form == "units"  # shares journaled per unit
    mean = spec.batch_share == "mean"
    # Journal is read a chunk-row range at a time: a step's row (and its sign split) and, per example recorded
    # per example, its values of these columns (a step holds up to a batch of them). The gathered source of a step
    # group is bounded too (per-example folds hold a few (ids, columns) temporaries: gradients, shares, parts).
    need = _needed_columns(journal, p, cols) if per_example or units else {}
    id_bytes = 4 * sum(_count(sel) for sel in need.values())
    step_bytes = 4 * ncols * 2 + id_bytes * (int(counts_all.max()) if len(counts_all) else 0)
    step_block = fold_step_block(budget, step_bytes, layout.chunk_steps)
    max_ids = fold_group_ids(budget, ncols, per_example or units)
    for s0 in range(start, stop, step_block):
        s1 = min(stop, s0 + step_block)
        steps = slice(s0, s1)
        if per_example or units:
            lo, hi = int(offsets[s0 - start]), int(offsets[s1 - start])
            values = _example_values(journal, need, first + lo, first + hi, device)
            if per_example:
                delta, scale = _deltas(journal, p, steps, shift(cols, kinds["delta"].start), device)
        elif p.granularity == "weight":
            block = read(steps, shift(cols, kinds["delta"].start))
            pos_rows, neg_rows = split_signed(tensor(block, device))
        else:
            pos_rows = tensor(read(steps, shift(cols, kinds["pos"].start)), device)
            neg_rows = tensor(read(steps, shift(cols, kinds["neg"].start)), device)
        counts = torch.from_numpy(counts_all[s0 - start : s1 - start])
        for g0, g1 in step_groups(counts, max_ids):
            lo, hi = int(offsets[s0 - start + g0]), int(offsets[s0 - start + g1])
            ids = tensor(ids_all[lo:hi], device)
            row_of_id = torch.repeat_interleave(torch.arange(g0, g1), counts[g0:g1]).to(device)
            if units:
                base = int(offsets[s0 - start])
                own = torch.arange(lo - base, hi - base, device=device)
                kernel(acc_pos, values["pos"], ids, own, None)
                kernel(acc_neg, values["neg"], ids, own, None)
                continue
            if per_example:
                base = int(offsets[s0 - start])
                group = {kind: v[lo - base : hi - base] for kind, v in values.items()}
                share = shares(
                    None if delta is None else delta[g0:g1],
                    example_grads(p, group, cols),
                    row_of_id - g0,
                    counts[g0:g1].to(device),
                    spec.share_rule,
                    None if scale is None else scale[g0:g1],
                )
                pos_part, neg_part = split_signed(share)
                del share
                own = torch.arange(hi - lo, device=device)
                kernel(acc_pos, pos_part, ids, own, None)
                kernel(acc_neg, neg_part, ids, own, None)
                continue
            scale = (
                (1.0 / counts[g0:g1].to(torch.float32)).repeat_interleave(counts[g0:g1]).to(device) if mean else None
            )
            kernel(acc_pos, pos_rows, ids, row_of_id, scale)
            kernel(acc_neg, neg_rows, ids, row_of_id, scale)


def _deltas(
    journal: JournalSource, p: ParamSpec, steps: slice, cols: slice | np.ndarray, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A per-example parameter's journaled Δw of ``steps`` (row columns ``cols``; zero at derived steps; None
    when every step is derived) and the steps' scales (zero where Δw is journaled; None when none is derived)."""
    stored = journal.scales(steps.start, steps.stop)
    if stored is None:
        return tensor(journal.row_block(steps, cols), device), None
    c = stored[:, journal.state.spec.names.index(p.name)]
    derived = np.isfinite(c)
    delta = None
    if not derived.all():
        rows = journal.row_block(steps, cols, stored)
        # Not in place: an in-memory block's rows are the recorder's buffer.
        delta = tensor(np.where(derived[:, None], np.float32(0), rows) if derived.any() else rows, device)
    if not derived.any():
        return delta, None
    return delta, tensor(np.where(derived, c, 0.0).astype(np.float32), device)


def fold_step_block(budget: int, step_bytes: int, chunk_steps: int) -> int:
    """Journal steps read at once by :func:`accumulate` (whole chunk rows), for steps of ``step_bytes``."""
    block = max(chunk_steps, (budget // 4) // max(1, step_bytes))
    return max(1, block // chunk_steps) * chunk_steps


def fold_group_ids(budget: int, ncols: int, per_example: bool) -> int:
    """Ids per kernel call in :func:`accumulate`: per-example folds hold a few (ids, columns) temporaries; the
    others only a few index bytes per id (the kernels gather rows in bounded slices, or not at all)."""
    if per_example:
        return max(1, (budget // 4) // max(1, 4 * ncols * 5))
    return max(1, (budget // 4) // 64)


def _needed_columns(journal: JournalSource, p: ParamSpec, cols: slice | np.ndarray) -> dict[str, slice | np.ndarray]:
    """The columns of ``journal/examples`` (by kind, as absolute row positions) that columns ``cols`` of ``p`` need:
    per-unit sums column for column; gradients the columns their factors span."""
    where = journal.state.spec.example_columns()[p.name]
    need = {kind: cols for kind in where} if p.example_form == "units" else needed_columns(p, cols)
    return {kind: shift(sel, where[kind].start) for kind, sel in need.items()}


def _count(sel: slice | np.ndarray) -> int:
    return sel.stop - sel.start if isinstance(sel, slice) else len(sel)


def _example_values(
    journal: JournalSource, need: dict[str, slice | np.ndarray], lo: int, hi: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """The journaled per-example values in columns ``need`` (see :func:`_needed_columns`), id positions [lo, hi)."""
    return {kind: tensor(journal.example_block(lo, hi, sel), device) for kind, sel in need.items()}


def tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if t.device == device else t.to(device, non_blocking=True)


def shift(cols: slice | np.ndarray, offset: int) -> slice | np.ndarray:
    """Columns of one parameter -> columns of the journal row."""
    if isinstance(cols, slice):
        return slice(cols.start + offset, cols.stop + offset)
    return cols + offset


def signed(pos: torch.Tensor, neg: torch.Tensor, sign: str) -> torch.Tensor:
    """R of ``sign`` from its two parts: ``pos``, ``neg`` or ``abs`` (their sum)."""
    if sign == "pos":
        return pos
    if sign == "neg":
        return neg
    return pos + neg


def block_width(units: int, bytes_per_col: int, budget: int, align: int) -> int:
    """Columns per block within ``budget``: a multiple of ``align`` (whole chunks) when the budget allows."""
    width = max(1, budget // max(1, bytes_per_col))
    if width >= align:
        width = (width // align) * align
    return max(1, min(units, width))
