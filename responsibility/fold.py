"""Fold kernels: turn journal rows (per-step weight changes) into per-example responsibility.

R[m] = Σ_t share_t · |Δw_t| · (number of times m is in step t's batch). A kernel receives a block of journal
rows and the flattened batch membership of those steps and scatter-adds into an example-major accumulator.
Example-major (N, P) layout is what makes ``index_add_`` fast (rows are contiguous); duplicates are summed.

Kernels are plain functions so a Triton/CUDA kernel can replace :func:`index_add_fold` without touching callers.
Accumulation is chronological, so folding in pieces gives bit-for-bit the same R as folding at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

FoldKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], None]


def index_add_fold(
    acc: torch.Tensor,
    rows: torch.Tensor,
    ids: torch.Tensor,
    row_of_id: torch.Tensor,
    scale: torch.Tensor | None = None,
) -> None:
    """``acc[ids[j]] += scale[j] * rows[row_of_id[j]]`` for every j, in order of j.

    ``acc`` is (N, P), ``rows`` (T, P) non-negative, ``ids`` and ``row_of_id`` (M,) int64, ``scale`` (M,) or None.
    """
    src = rows.index_select(0, row_of_id)
    if scale is not None:
        src.mul_(scale.unsqueeze(1))
    acc.index_add_(0, ids, src)


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


def topk_rows(rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of every row of a float32 (M, N) tensor, best first, ties broken by the smaller column index.

    The result equals a stable descending sort cut at k. A float ``topk`` finds each row's k-th value; every
    larger value is in, and of the values equal to it the smallest indices fill the remaining places. Only rows
    with such a tie pay for ranking their tied entries. Working along contiguous rows is several times faster
    than along columns, so callers holding example-major R transpose once and share it across signs.
    """
    if rows.dtype != torch.float32 or rows.dim() != 2:
        raise TypeError(f"topk_rows expects a 2-D float32 tensor, got {rows.dtype} {tuple(rows.shape)}")
    m, n = rows.shape
    k = min(k, n)
    if k == 0 or m == 0:
        return torch.empty((m, k), dtype=torch.int64), torch.empty((m, k), dtype=torch.float32)
    # The (k+1)-th value tells whether values equal to the k-th one continue past the cut (a tie to break).
    top = rows.topk(min(k + 1, n), dim=1, sorted=True).values
    kth = top[:, k - 1 : k]
    chosen = rows >= kth
    tied = (top[:, k] == kth[:, 0]).nonzero().flatten() if k < n else torch.empty(0, dtype=torch.int64)
    if len(tied):
        # Keep every larger value and, of the equal ones, the smallest indices (found by an integer top-k).
        sub, kt = rows[tied], kth[tied]
        need = k - (top[tied, :k] > kt).sum(1, keepdim=True)
        key = torch.where(sub == kt, torch.arange(n, 0, -1, dtype=torch.int32), torch.zeros((), dtype=torch.int32))
        first = key.topk(k, dim=1, sorted=True).indices
        keep = sub > kt
        row = torch.arange(len(tied)).unsqueeze(1).expand(-1, k)
        take = torch.arange(k).unsqueeze(0) < need
        keep[row[take], first[take]] = True
        chosen[tied] = keep  # now exactly k per row
    idx = chosen.nonzero()[:, 1].view(m, k)  # ascending within each row
    vals = rows.gather(1, idx)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices  # stable: equal values keep index order
    return idx.gather(1, order), vals.gather(1, order)


def topk_desc(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k along dim 0 of a float32 (N, ...) tensor (examples first), ties to the smaller example id."""
    if values.dtype != torch.float32:
        raise TypeError(f"topk_desc expects float32, got {values.dtype}")
    n = values.shape[0]
    k = min(k, n)
    ids, vals = topk_rows(values.reshape(n, -1).t().contiguous(), k)
    return ids.t().reshape(k, *values.shape[1:]), vals.t().reshape(k, *values.shape[1:])
