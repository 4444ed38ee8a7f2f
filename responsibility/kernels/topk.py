"""Top-k along examples with the store's tie rule: larger value first, then the smaller example id."""

from __future__ import annotations

import torch


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
