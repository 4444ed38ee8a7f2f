"""The Triton kernel of :func:`responsibility.kernels.triton_fold.fused_fold`, in its own module so that only a fold
on a GPU imports Triton."""

import triton
import triton.language as tl


@triton.jit
def fold_kernel(
    acc_ptr,
    rows_ptr,
    examples_ptr,
    starts_ptr,
    steps_ptr,
    col_blocks,
    width,
    acc_stride,
    rows_stride,
    BLOCK_P: tl.constexpr,
):
    """``acc[examples[s], cols] += rows[steps[k], cols]`` for k in segment s in order, for one block of cols."""
    pid = tl.program_id(0)
    seg = pid // col_blocks
    cols = (pid % col_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask = cols < width
    # 64-bit offsets: R can hold more than 2**31 cells (100,000 x 8,192 is 8.2e8 and larger ones are folded).
    cell = tl.load(examples_ptr + seg).to(tl.int64) * acc_stride + cols
    total = tl.load(acc_ptr + cell, mask=mask)
    for k in range(tl.load(starts_ptr + seg), tl.load(starts_ptr + seg + 1)):
        # A plain add, never fused with anything: each is rounded as the CPU rounds it.
        total += tl.load(rows_ptr + tl.load(steps_ptr + k).to(tl.int64) * rows_stride + cols, mask=mask)
    tl.store(acc_ptr + cell, total, mask=mask)
