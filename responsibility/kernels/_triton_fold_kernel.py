"""The Triton kernel of :func:`responsibility.kernels.triton_fold.fused_fold`, in its own module so that only a fold
on a GPU imports Triton."""

import triton
import triton.language as tl


@triton.jit
def fold_kernel(
    acc_ptr,
    rows_ptr,
    scale_ptr,
    ids_ptr,
    ends_ptr,
    steps_ptr,
    col_blocks,
    width,
    acc_stride,
    rows_stride,
    HAS_SCALE: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    """For sorted ``ids``: the program of position i, if i is its example's first position, adds
    ``scale[k] * rows[steps[k], cols]`` for k in [i, ends[i]) in order to ``acc[ids[i], cols]``; the others do
    nothing."""
    pid = tl.program_id(0)
    i = pid // col_blocks
    cols = (pid % col_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    example = tl.load(ids_ptr + i)
    first = (i == 0) | (tl.load(ids_ptr + tl.maximum(i - 1, 0)) != example)
    end = tl.where(first, tl.load(ends_ptr + i), i)
    mask = cols < tl.where(first, width, 0)  # no columns for a later position
    # 64-bit offsets: R can hold more than 2**31 cells (100,000 x 8,192 is 8.2e8 and larger ones are folded).
    cell = example.to(tl.int64) * acc_stride + cols
    total = tl.load(acc_ptr + cell, mask=mask)
    for k in range(i, end):
        row = tl.load(rows_ptr + tl.load(steps_ptr + k).to(tl.int64) * rows_stride + cols, mask=mask)
        if HAS_SCALE:
            row = row * tl.load(scale_ptr + k)
        # Each product and sum rounded on its own (the launch disables FMA contraction), as the CPU rounds them.
        total += row
    tl.store(acc_ptr + cell, total, mask=mask)
