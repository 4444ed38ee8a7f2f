"""Fold kernels: turn journal rows (per-step weight changes) into per-example responsibility.

R[m] = Σ_t share_t · |Δw_t| · (number of times m is in step t's batch). A kernel receives a block of journal
rows and the flattened batch membership of those steps and scatter-adds into an example-major accumulator.
Example-major (N, P) layout is what makes the scatter-add fast (rows are contiguous); duplicates are summed.

Kernels are plain functions, so a fused kernel (:mod:`responsibility.kernels.triton_fold` on CUDA) can take over
part of :func:`index_add_fold` without touching callers.
Accumulation is chronological, so folding in pieces gives bit-for-bit the same R as folding at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from responsibility.kernels import triton_fold

FoldKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], None]

# Bytes of gathered source per slice (and per block of a dense pass). Every slice pays fixed costs (index_add_
# sorts its ids; each op starts a parallel region), so slices are large, but within the last-level cache so that
# the gathered rows are not a second trip to memory. 4-16 MB measured alike on a 2-core machine with 32 MB of L3;
# 32 MB and more were slower.
BLOCK_BYTES = 8 << 20
# A dense pass adds a row to every example; scattering adds rows at random places. Their cost ratio per example
# (dense pass / scattered row) measured on a 2-core machine (``bench_fold.py --calibrate``, docs/benchmarks.md):
# 0.64-0.84 at width 64, 0.68-0.87 at 128 and 256, 0.75-0.96 at 1024 to 8192; 1.1-2.3 at widths 1 to 16, where
# the dense pass's fixed cost per example dominates. The two terms below sit near the top of those ranges; a
# wrong choice then costs at most 1.5x (at width 64).
DENSE_CELL_RATIO = 0.85
DENSE_ROW_CELLS = 8
# Scattered rows at least this wide are sorted by example first (see _scatter).
SORTED_SCATTER_WIDTH = 128
# Slices on an accelerator: large, since every slice costs kernel launches and the GPU has no cache to stay within.
DEVICE_BLOCK_BYTES = 256 << 20


def dense_threshold(width: int) -> float:
    """Smallest fraction of the examples a round must cover for a dense pass to beat scattering its rows."""
    return DENSE_CELL_RATIO + DENSE_ROW_CELLS / max(1, width)


def index_add_fold(
    acc: torch.Tensor,
    rows: torch.Tensor,
    ids: torch.Tensor,
    row_of_id: torch.Tensor,
    scale: torch.Tensor | None = None,
    *,
    block_bytes: int = BLOCK_BYTES,
    dense_fraction: float | None = None,
) -> None:
    """``acc[ids[j]] += scale[j] * rows[row_of_id[j]]`` for every j, in order of j.

    ``acc`` is (N, P), ``rows`` (T, P), ``ids`` and ``row_of_id`` (M,) int64, ``scale`` (M,) or None. Every cell
    receives the same float additions in the same order as one ``acc.index_add_(0, ids, scale * rows[row_of_id])``,
    so the result is bit-identical to it, and folding steps in pieces equals folding them at once.

    Two ways of adding keep that order. While the not-yet-added ids cover enough of the N examples, a *round*
    takes the earliest remaining occurrence of every id (so each example's occurrences are still added in order)
    and adds to all N rows in one streaming pass; examples absent from the round add -0.0, the exact additive
    identity. What is left is scattered with ``index_add_`` in order of j, gathered a cache-sized slice at a time.
    Rows of at least :data:`SORTED_SCATTER_WIDTH` are scattered sorted stably by example, which adds all of an
    example's rows while its accumulator row is in cache; for them a dense pass is taken only for a group of
    distinct ids.
    On a CUDA device with Triton, float32 operands are added by :func:`responsibility.kernels.triton_fold.fused_fold`,
    which sums each example's rows in order in one pass over its row of ``acc``. Otherwise on an accelerator, whose
    ``index_add_`` adds with atomics (in any order, and on CUDA flushing subnormals to zero), rows are added in
    rounds of distinct ids by gathering, adding and putting back, which keeps the CPU's order and arithmetic.
    ``block_bytes`` and ``dense_fraction`` (a round covering at least this fraction of the examples is added densely;
    None: :func:`dense_threshold`; 0: always; above 1: never) change the speed only, never the result.
    """
    if acc.device.type != "cpu":
        if triton_fold.fusable(acc, rows, scale):
            triton_fold.fused_fold(acc, rows, ids, row_of_id, scale)
        else:
            _distinct_rounds(acc, rows, ids, row_of_id, scale, DEVICE_BLOCK_BYTES)
        return
    n, width = acc.shape
    min_round = n * (dense_threshold(width) if dense_fraction is None else dense_fraction)
    if width >= SORTED_SCATTER_WIDTH:
        # A sorted scatter reads and writes a repeated example's row once, where rounds would pass over all rows
        # once per repeat: only a group of distinct ids may go dense.
        if min_round <= len(ids) <= n and len(ids) and int(torch.bincount(ids, minlength=n).max()) <= 1:
            _dense_round(acc, _pad(rows), ids, row_of_id, scale, block_bytes)
        else:
            _scatter(acc, rows, ids, row_of_id, scale, block_bytes)
        return
    todo = torch.arange(len(ids))
    padded = None
    while len(todo) and len(todo) >= min_round:
        taken = _earliest(ids, todo, n)
        now = todo[taken]
        if len(now) < min_round:
            break
        padded = _pad(rows) if padded is None else padded
        _dense_round(acc, padded, ids[now], row_of_id[now], None if scale is None else scale[now], block_bytes)
        todo = todo[~taken]
    if len(todo) == len(ids):
        _scatter(acc, rows, ids, row_of_id, scale, block_bytes)
    elif len(todo):
        _scatter(acc, rows, ids[todo], row_of_id[todo], None if scale is None else scale[todo], block_bytes)


def plain_index_add(
    acc: torch.Tensor,
    rows: torch.Tensor,
    ids: torch.Tensor,
    row_of_id: torch.Tensor,
    scale: torch.Tensor | None = None,
) -> None:
    """The exactness reference of :func:`index_add_fold` on the CPU: gather the whole source, then one chronological
    ``index_add_``. Bit-identical to it, and slower (the gathered source of a large group leaves the cache). On a GPU
    its atomics add duplicate ids in any order, so it is no reference there."""
    src = rows.index_select(0, row_of_id)
    if scale is not None:
        src.mul_(scale.unsqueeze(1))
    acc.index_add_(0, ids, src)


def _pad(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` and one more row of -0.0, the row of examples absent from a dense round."""
    return torch.cat([rows, rows.new_full((1, rows.shape[1]), -0.0)])


def _scatter(
    acc: torch.Tensor,
    rows: torch.Tensor,
    ids: torch.Tensor,
    row_of_id: torch.Tensor,
    scale: torch.Tensor | None,
    block_bytes: int,
) -> None:
    """``index_add_`` one slice of ids at a time (the gathered source of a slice stays in cache); wide rows sorted.

    A stable sort by example keeps every example's additions in their order, which is all bit-identity needs.
    Sorted slices were 1.1-2.5x faster at widths 256 to 8192 and did not show the unsorted slices' occasional
    2.5x slow runs, but at width 16 the sort doubled the cost (measured on a 2-core machine).
    """
    width = rows.shape[1]
    if width >= SORTED_SCATTER_WIDTH:
        order = torch.sort(ids, stable=True).indices
        ids, row_of_id = ids[order], row_of_id[order]
        if scale is not None:
            scale = scale[order]
    block = max(1, block_bytes // max(1, rows.element_size() * width))
    # One buffer for all slices: a fresh large tensor per slice would be page-faulted in every time.
    buf = rows.new_empty(min(block, len(ids)), width)
    for j0 in range(0, len(ids), block):
        sel = row_of_id[j0 : j0 + block]
        src = torch.index_select(rows, 0, sel, out=buf[: len(sel)])
        if scale is not None:
            src.mul_(scale[j0 : j0 + block].unsqueeze(1))
        acc.index_add_(0, ids[j0 : j0 + block], src)


def _dense_round(
    acc: torch.Tensor,
    padded: torch.Tensor,
    ids: torch.Tensor,
    row_of_id: torch.Tensor,
    scale: torch.Tensor | None,
    block_bytes: int,
) -> None:
    """``acc[m] += scale * padded[step of m]`` for every example m, in contiguous blocks; ``ids`` are distinct.

    Examples not in ``ids`` point at ``padded``'s last row, all -0.0 (``x + -0.0 == x`` for every x).
    """
    n, width = acc.shape
    step_of = torch.full((n,), padded.shape[0] - 1, dtype=torch.int64, device=acc.device)
    step_of[ids] = row_of_id
    scale_of = None
    if scale is not None:
        scale_of = torch.ones(n, dtype=scale.dtype, device=acc.device)
        scale_of[ids] = scale
    block = max(1, block_bytes // max(1, padded.element_size() * width))
    buf = padded.new_empty(min(block, n), width)
    for m0 in range(0, n, block):
        m1 = min(n, m0 + block)
        src = torch.index_select(padded, 0, step_of[m0:m1], out=buf[: m1 - m0])
        if scale_of is not None:
            src.mul_(scale_of[m0:m1].unsqueeze(1))
        acc[m0:m1].add_(src)


def _earliest(ids: torch.Tensor, todo: torch.Tensor, n: int) -> torch.Tensor:
    """Mask over ``todo`` (ascending positions into ``ids``) of each id's earliest position among them."""
    todo_ids = ids[todo]
    earliest = torch.full((n,), len(ids), dtype=torch.int64, device=ids.device)
    earliest.scatter_reduce_(0, todo_ids, todo, "amin")
    return earliest[todo_ids] == todo


def _distinct_rounds(
    acc: torch.Tensor,
    rows: torch.Tensor,
    ids: torch.Tensor,
    row_of_id: torch.Tensor,
    scale: torch.Tensor | None,
    block_bytes: int,
) -> None:
    """Add in rounds of distinct ids, each example's earliest remaining occurrence first.

    A round adds at most one row to each example, so each example's rows are added in order of j. Within a round
    the rows are gathered, added to the gathered rows of ``acc`` and put back (distinct ids: no atomics); a group
    with no repeated example is one round.
    """
    todo = torch.arange(len(ids), device=ids.device)
    block = max(1, block_bytes // max(1, rows.element_size() * rows.shape[1]))
    while len(todo):
        taken = _earliest(ids, todo, acc.shape[0])
        now = todo[taken]
        for j0 in range(0, len(now), block):
            j = now[j0 : j0 + block]
            src = rows.index_select(0, row_of_id[j])
            if scale is not None:
                src.mul_(scale[j].unsqueeze(1))
            acc.index_put_((ids[j],), acc.index_select(0, ids[j]).add_(src))
        todo = todo[~taken]


def split_signed(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed Δw -> (positive part, magnitude of the negative part), both non-negative."""
    return delta.clamp(min=0), delta.clamp(max=0).neg_()


def step_groups(ids_per_step: torch.Tensor, max_ids: int) -> list[tuple[int, int]]:
    """Split steps into consecutive groups of at most ``max_ids`` ids (at least one step per group)."""
    groups: list[tuple[int, int]] = []
    start, total = 0, 0
    counts = ids_per_step.tolist()
    for t, c in enumerate(counts):
        if t > start and total + c > max_ids:
            groups.append((start, t))
            start, total = t, 0
        total += c
    if start < len(counts):
        groups.append((start, len(counts)))
    return groups
