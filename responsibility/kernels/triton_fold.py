"""The fold on a CUDA device as one Triton kernel: every touched row of R is read and written once per call.

Without it, :func:`responsibility.kernels.index_add_fold` scatters on a GPU in rounds of distinct ids: one gather and
``index_add_`` per repeat of an example, so repeated examples' rows of R make one round trip per repeat and the
gathered rows one more. Here the ids are sorted stably by example (each example's occurrences stay in order of j),
and one program per (example, block of columns) holds the example's row in registers, adds its rows one float32
addition at a time in that order and stores it once: the additions of the CPU's chronological ``index_add_``, in
its order, so its bits.

Triton is optional (torch's CPU wheels come without it, and so does the CPU CI): without it this module still
imports, and :func:`fusable` is False.
"""

from __future__ import annotations

import importlib.util

import torch

# Found, not imported: importing Triton takes a quarter of a second, which only a fold on a GPU should pay.
HAVE_TRITON = importlib.util.find_spec("triton") is not None

# Columns per program at most: 4 KB of float32 in registers (8 per thread at 4 warps) while the rows stream in.
MAX_BLOCK_P = 1024


def triton_available(device: torch.device) -> bool:
    """Whether the fused kernel can run on ``device``: a CUDA device and an importable Triton."""
    return HAVE_TRITON and device.type == "cuda"


def fusable(acc: torch.Tensor, rows: torch.Tensor, scale: torch.Tensor | None = None) -> bool:
    """Whether :func:`fused_fold` takes these operands: on a device Triton runs on, all float32 (the kernel computes
    in float32 and nothing else), and ``acc``'s columns contiguous (it is written in place, so it cannot be copied
    into another layout; the kernel takes any row stride, so column slices of a wider R qualify)."""
    return (
        triton_available(acc.device)
        and acc.dtype == torch.float32
        and rows.dtype == torch.float32
        and (scale is None or scale.dtype == torch.float32)
        and (acc.shape[1] <= 1 or acc.stride(1) == 1)
    )


def fused_fold(
    acc: torch.Tensor,
    rows: torch.Tensor,
    ids: torch.Tensor,
    row_of_id: torch.Tensor,
    scale: torch.Tensor | None = None,
) -> None:
    """``acc[ids[j]] += scale[j] * rows[row_of_id[j]]`` for every j, in order of j: bit-identical to one
    chronological ``index_add_`` of the gathered (and scaled) rows on the CPU.

    ``acc`` (N, P), ``rows`` (T, P) and ``scale`` (M,) or None float32 (see :func:`fusable`), ``ids`` and
    ``row_of_id`` (M,) int64, all on one device Triton runs on (CPU tensors only under ``TRITON_INTERPRET=1``). Ids
    or rows out of range raise IndexError before anything is written.
    """
    n, width = acc.shape
    if not len(ids) or not width:
        return
    # The kernel does not check its indices: an id out of range would write outside acc. The one sync of a call.
    lo_id, hi_id, lo_row, hi_row = torch.cat(
        [torch.stack(torch.aminmax(ids)), torch.stack(torch.aminmax(row_of_id))]
    ).tolist()
    if lo_id < 0 or hi_id >= n or lo_row < 0 or hi_row >= len(rows):
        raise IndexError(f"fold ids must lie in [0, {n}) and their rows in [0, {len(rows)})")
    if rows.shape[1] > 1 and rows.stride(1) != 1:
        rows = rows.contiguous()  # a copy of the (small) step rows, so the kernel reads whole row blocks
    # A stable sort keeps each example's occurrences in order of j; ends[i] is where position i's example ends.
    sorted_ids, order = torch.sort(ids, stable=True)
    ends = torch.searchsorted(sorted_ids, sorted_ids, right=True)
    from responsibility.kernels._triton_fold_kernel import fold_kernel

    block = min(MAX_BLOCK_P, 1 << (width - 1).bit_length())
    col_blocks = -(-width // block)
    # A one-dimensional grid, a program per (position, column block): the first grid dimension holds 2**31 - 1
    # programs, the others only 65,535 (too few column blocks for the widest blocks of R). Programs of an example's
    # later positions return at once.
    fold_kernel[(len(ids) * col_blocks,)](
        acc,
        rows,
        rows if scale is None else scale[order],
        sorted_ids,
        ends,
        row_of_id[order],
        col_blocks,
        width,
        acc.stride(0),
        rows.stride(0),
        HAS_SCALE=scale is not None,
        BLOCK_P=block,
        num_warps=max(1, min(4, block // 256)),
        enable_fp_fusion=False,
    )
