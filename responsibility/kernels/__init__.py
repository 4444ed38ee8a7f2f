"""Numerical kernels: the scatter-add fold of journal rows into R, top-k along examples, per-example shares.

Plain functions over tensors (no store, no Lightning), so a fused CUDA/Triton kernel can replace one without
touching its callers.
"""

from responsibility.kernels.scatter import (
    FoldKernel,
    dense_threshold,
    index_add_fold,
    plain_index_add,
    split_signed,
    step_groups,
)
from responsibility.kernels.topk import topk_columns, topk_desc, topk_rows

__all__ = [
    "FoldKernel",
    "dense_threshold",
    "index_add_fold",
    "plain_index_add",
    "split_signed",
    "step_groups",
    "topk_columns",
    "topk_desc",
    "topk_rows",
]
