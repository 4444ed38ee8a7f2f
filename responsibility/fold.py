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


def topk_desc(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k along dim 0 of a non-negative float32 (N, P) tensor, ties broken by the smaller example id.

    Non-negative float32 bit patterns order like the floats, so one int64 key per cell holds value and id:
    a single ``topk`` gives a deterministic result that matches a stable descending sort.
    """
    if values.dtype != torch.float32:
        raise TypeError(f"topk_desc expects float32, got {values.dtype}")
    n = values.shape[0]
    k = min(k, n)
    # +0.0 turns any -0.0 into +0.0 so its bit pattern sorts as zero.
    bits = (values + 0.0).view(torch.int32).to(torch.int64)
    inv_id = torch.arange(n - 1, -1, -1, dtype=torch.int64, device=values.device)
    key = (bits << 32) | inv_id.view(-1, *([1] * (values.dim() - 1)))
    top = key.topk(k, dim=0, sorted=True).values
    ids = (n - 1) - (top & 0xFFFFFFFF)
    vals = (top >> 32).to(torch.int32).view(torch.float32)
    return ids, vals
