"""Top-k along examples with the store's tie rule: larger value first, then the smaller example id.

Two exact kernels. :func:`topk_rows` ranks along the contiguous rows of an (M, N) tensor. :func:`topk_columns` ranks
along the examples (dim 0) of example-major (N, C) blocks, as the fold holds R, without transposing them: one
streaming pass takes the maximum of every group of ``g`` consecutive examples; per column, only the groups whose
maximum reaches the k-th largest group maximum can hold a top-k entry (k distinct entries are at least that large),
and of the groups whose maximum equals it only the first k can hold the smallest ids of that value. Those few
groups are gathered and ranked exactly, in id order, by :func:`topk_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Bytes of the sum formed per group-maximum call when parts are summed: the block and its sum stay in cache (on a
# 2-core VM, (10,000, 8,192) parts: 131 ms with 4,096-row blocks, 41 ms with 2-8 MB ones; 1,562 columns: 14 -> 8 ms).
SUM_BLOCK_BYTES = 4 << 20


def topk_rows(rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of every row of a float32 (M, N) tensor, best first, ties broken by the smaller column index.

    The result equals a stable descending sort cut at k. A float ``topk`` finds each row's k-th value; every
    larger value is in, and of the values equal to it the smallest indices fill the remaining places. Only rows
    with such a tie pay for ranking their tied entries.
    """
    if rows.dtype != torch.float32 or rows.dim() != 2:
        raise TypeError(f"topk_rows expects a 2-D float32 tensor, got {rows.dtype} {tuple(rows.shape)}")
    m, n = rows.shape
    k = min(k, n)
    if k == 0 or m == 0:
        return rows.new_empty((m, k), dtype=torch.int64), rows.new_empty((m, k))
    # The (k+1)-th value tells whether values equal to the k-th one continue past the cut (a tie to break).
    top = rows.topk(min(k + 1, n), dim=1, sorted=True).values
    kth = top[:, k - 1 : k]
    chosen = rows >= kth
    dev = rows.device
    tied = (top[:, k] == kth[:, 0]).nonzero().flatten() if k < n else torch.empty(0, dtype=torch.int64, device=dev)
    if len(tied):
        # Keep every larger value and, of the equal ones, the smallest indices (found by an integer top-k).
        sub, kt = rows[tied], kth[tied]
        need = k - (top[tied, :k] > kt).sum(1, keepdim=True)
        key = torch.where(sub == kt, torch.arange(n, 0, -1, dtype=torch.int32, device=dev), 0)
        first = key.topk(k, dim=1, sorted=True).indices
        keep = sub > kt
        row = torch.arange(len(tied), device=dev).unsqueeze(1).expand(-1, k)
        take = torch.arange(k, device=dev).unsqueeze(0) < need
        keep[row[take], first[take]] = True
        chosen[tied] = keep  # now exactly k per row
    idx = chosen.nonzero()[:, 1].view(m, k)  # ascending within each row
    vals = rows.gather(1, idx)
    order = torch.sort(vals, dim=1, descending=True, stable=True).indices  # stable: equal values keep index order
    return idx.gather(1, order), vals.gather(1, order)


def group_size(n: int, k: int) -> int:
    """Examples per group: balances the group-maximum table (~n/g per column) against the gathered (~2k*g).

    ``sqrt(n/k) / 3`` rounded to a power of two: within a fifth of the fastest of 2-64 on one thread in every shape
    swept (n from 1,000 to 300,000, k 10 and 50), the fastest in most; ``/ 2`` chose twice as large groups at
    n/k = 1,000 (issue 12's store) and 10,000, each slower (docs/benchmarks.md)."""
    return 1 << max(0, min(6, round(math.log2(max(1.0, math.sqrt(n / max(1, k)) / 3)))))


def topk_columns(parts: torch.Tensor | Sequence[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k along dim 0 of an example-major float32 (N, C) tensor, or of the sum of several (``pos + neg``).

    Returns ``(ids, values)``, each ``(k, C)``, best first, ties to the smaller example id: the same as
    :func:`topk_rows` of the transposed sum, bit for bit (a sum is formed as ``parts[0] + parts[1] + ...``).
    """
    parts = [parts] if isinstance(parts, torch.Tensor) else list(parts)
    first = parts[0]
    if first.dtype != torch.float32 or first.dim() != 2 or any(p.shape != first.shape for p in parts):
        raise TypeError(f"topk_columns expects 2-D float32 tensors of one shape, got {[tuple(p.shape) for p in parts]}")
    n, c = first.shape
    k = min(k, n)
    if k == 0 or c == 0:
        return first.new_empty((k, c), dtype=torch.int64), first.new_empty((k, c))
    parts = [p.contiguous() for p in parts]
    g = group_size(n, k)
    return _select(parts, _group_max(parts, g), g, k)


def _group_max(parts: list[torch.Tensor], g: int) -> torch.Tensor:
    """``(ceil(N/g), C)``: the maximum over every g consecutive rows of the sum of ``parts``."""
    n, c = parts[0].shape
    out = parts[0].new_empty(-(-n // g), c)
    full = n // g * g
    block = max(g, SUM_BLOCK_BYTES // (parts[0].element_size() * max(c, 1)) // g * g)
    scratch = parts[0].new_empty(min(full, block), c) if len(parts) > 1 else None
    for r0 in range(0, full, block if scratch is not None else max(full, 1)):
        r1 = min(full, r0 + block) if scratch is not None else full
        rows = _sum([p[r0:r1] for p in parts], None if scratch is None else scratch[: r1 - r0])
        torch.amax(rows.view(-1, g, c), dim=1, out=out[r0 // g : r1 // g])
    if full < n:
        out[-1] = _sum([p[full:] for p in parts], None).amax(0)
    return out


def _sum(parts: list[torch.Tensor], out: torch.Tensor | None) -> torch.Tensor:
    if len(parts) == 1:
        return parts[0]
    total = torch.add(parts[0], parts[1], out=out) if out is not None else parts[0] + parts[1]
    for p in parts[2:]:
        total += p
    return total


def _select(parts: list[torch.Tensor], gmax: torch.Tensor, g: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    n, c = parts[0].shape
    device = parts[0].device
    groups = gmax.t().contiguous()  # (C, groups): rows contiguous for top-k
    kth = groups.topk(min(k, groups.shape[1]), dim=1, sorted=False).values.amin(1, keepdim=True)
    cand = groups >= kth
    col, grp = cand.nonzero().unbind(1)  # by column, groups ascending: positions follow example ids
    counts = torch.bincount(col, minlength=c)
    # Fewer than k groups exceed the k-th maximum; of those equal to it, only the first k can hold the top ids.
    crowded = (counts > 2 * k - 1).nonzero().flatten()
    if len(crowded):
        sub, kt = groups[crowded], kth[crowded]
        eq = sub == kt
        cand[crowded] = (sub > kt) | (eq & (eq.cumsum(1, dtype=torch.int32) <= k))
        col, grp = cand.nonzero().unbind(1)
        counts = torch.bincount(col, minlength=c)
    slot = torch.arange(len(col), device=device) - (counts.cumsum(0) - counts)[col]
    width = int(counts.max()) * g
    within = torch.arange(g, device=device)
    rows = (grp.unsqueeze(1) * g + within).view(-1)
    where = ((col * width + slot * g).unsqueeze(1) + within).view(-1)
    cols = col.repeat_interleave(g)
    if n % g:  # the last group is short
        valid = rows < n
        rows, cols, where = rows[valid], cols[valid], where[valid]
    flat = rows * c + cols
    values = _sum([p.view(-1).index_select(0, flat) for p in parts], None)
    dense = torch.full((c, width), -math.inf, device=device)
    dense_ids = torch.full((c, width), n, dtype=torch.int64, device=device)
    dense.view(-1).scatter_(0, where, values)
    dense_ids.view(-1).scatter_(0, where, rows)
    # A row's positions follow its example ids, so topk_rows' tie rule (the smaller position) is the store's. It
    # sorts only the k it keeps; with a stable sort of whole rows, ranking real R took 1.1x as long on one thread.
    at, vals = topk_rows(dense, k)
    return dense_ids.gather(1, at).t(), vals.t()


def topk_desc(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k along dim 0 of a float32 (N, ...) tensor (examples first), ties to the smaller example id."""
    if values.dtype != torch.float32:
        raise TypeError(f"topk_desc expects float32, got {values.dtype}")
    n = values.shape[0]
    k = min(k, n)
    ids, vals = topk_columns(values.reshape(n, -1), k)
    return ids.reshape(k, *values.shape[1:]), vals.reshape(k, *values.shape[1:])
