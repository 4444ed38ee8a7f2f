"""Offline analysis of large stores with Dask: folded R as a lazy ``dask.array``, and exact out-of-core reductions.

The store's own methods (:meth:`ResponsibilityStore.read`, :meth:`~ResponsibilityStore.most_responsible`,
:func:`responsibility.analysis.groups.group_responsibility`) are the NumPy path and suit stores whose column
blocks fit in memory. The functions here build task graphs over the *folded* R chunks instead, so that any Dask
scheduler (synchronous, threads, processes, distributed) can run them with a few chunks in memory at a time::

    import dask
    from responsibility import ResponsibilityStore
    from responsibility.analysis import offline

    store = ResponsibilityStore.open("runs/r.zarr")          # folded: store.fold() or `responsibility fold`
    ids, vals = offline.topk(store, "net.fc1.weight", k=20)  # lazy (20, units) each
    ids, vals = dask.compute(ids, vals)                      # one pass over R

Results are lazy arrays over the flat columns of a parameter (``units`` = weights, or output units at neuron
granularity); ``.reshape(k, *store.param(name).r_shape)`` after computing gives the shape ``read`` uses. They are
exact: R values are the stored float32 (``abs`` = ``pos + neg`` in float32, as ``read`` computes it), top-k ties
go to the smaller example id as in the store's index, and sums are accumulated in float64 (they equal the NumPy
path's up to float64 rounding order, a relative difference of about 1e-16 per added term).

Dask is imported inside the functions, so ``import responsibility`` does not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from responsibility.analysis.groups import resolve_groups
from responsibility.choices import Sign, check_choice
from responsibility.errors import NotFoldedError, StoreCorruptError
from responsibility.store import ResponsibilityStore

if TYPE_CHECKING:
    import dask.array

__all__ = ["NotFoldedError", "argmax", "as_dask", "column_totals", "group_sums", "topk"]


def as_dask(
    store: ResponsibilityStore, name: str, sign: Sign = "abs", *, allow_stale: bool = False
) -> dask.array.Array:
    """Folded R of parameter ``name`` as a lazy ``(num_examples, units)`` float32 Dask array, chunked as stored.

    Raises :class:`NotFoldedError` if the parameter has no fold, or (unless ``allow_stale``) if journal steps were
    committed after its fold: those are not in the R arrays, and the NumPy path would include them. A missing
    chunk (it reads as the NaN fill value) raises :class:`StoreCorruptError` when its block is computed.
    """
    import dask.array as da
    from dask.base import tokenize

    check_choice("sign", sign, Sign)
    folded = store.folded_steps(name)  # also rejects an unknown name
    if folded == 0:
        raise NotFoldedError(
            f"{name!r} in {store.path} is not folded; run store.fold() (open with mode='r+') or "
            f"`responsibility fold {store.path}` first"
        )
    if folded < store.steps and not allow_stale:
        raise NotFoldedError(
            f"the fold of {name!r} in {store.path} covers {folded} of {store.steps} journal steps; run store.fold() "
            f"or `responsibility fold {store.path}` to bring it up to date, or pass allow_stale=True"
        )
    parts = []
    for part in ("pos", "neg") if sign == "abs" else (sign,):
        arr = store.fold_array(name, part)  # dtype and shape checked against the spec
        path = arr.path.rsplit("/", 1)[0]
        # Named by content identity (store, generation path): the same fold gives the same graph keys.
        token = tokenize(store.path, path, part, store.generation)
        x = da.from_array(
            arr,
            chunks=arr.chunks,
            name=f"r-{part}-{token}",
            lock=False,
            asarray=True,
            meta=np.empty((0, 0), np.float32),
        )
        parts.append(x.map_blocks(_verified, f"{store.path}/{path}/{part}", dtype=np.float32))
    return parts[0] + parts[1] if sign == "abs" else parts[0]


def topk(
    store: ResponsibilityStore, name: str, k: int = 1, sign: Sign = "abs", *, split_every: int | None = None
) -> tuple[dask.array.Array, dask.array.Array]:
    """The ``k`` most responsible example ids of every column and their R values: lazy ``(k, units)`` arrays.

    Best first; ties go to the smaller example id, so the result equals :meth:`ResponsibilityStore.most_responsible`
    (flattened). Each example-chunk yields its own top-k candidates, which a tree reduction merges.
    """
    import dask.array as da

    n = store.num_examples
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    if n > 1 << 32:
        raise ValueError("topk packs example ids into 32 bits; stores with more than 2**32 examples are unsupported")
    r = as_dask(store, name, sign)
    rows = da.arange(n, chunks=(r.chunks[0],), dtype=np.int64)
    keys = da.blockwise(_keys, "nu", r, "nu", rows, "n", n=n, dtype=np.int64)
    top = da.topk(keys, k, axis=0, split_every=split_every)
    ids = top.map_blocks(_key_ids, n=n, dtype=np.int64)
    values = top.map_blocks(_key_values, dtype=np.float32)
    return ids, values


def argmax(store: ResponsibilityStore, name: str, sign: Sign = "abs") -> dask.array.Array:
    """The most responsible example id of every column (ties: smaller id): lazy ``(units,)`` int64."""
    return topk(store, name, 1, sign)[0][0]


def group_sums(
    store: ResponsibilityStore,
    name: str,
    groups: np.ndarray | None = None,
    num_groups: int | None = None,
    sign: Sign = "abs",
) -> dask.array.Array:
    """``G[g, u] = Σ_{m in group g} R[m, u]``: lazy ``(num_groups, units)`` float64.

    ``groups`` holds one non-negative group id per example (default: the store's labels). Each example-chunk is
    summed per group (``index_add_`` in float64), then the per-chunk sums are added in a tree reduction.
    """
    import dask.array as da

    r = as_dask(store, name, sign)
    groups, g = resolve_groups(store, groups, num_groups)
    gid = da.from_array(groups, chunks=(r.chunks[0],))
    per_chunk = da.blockwise(
        _group_block,
        "bgu",
        r,
        "bu",
        gid,
        "b",
        g=g,
        new_axes={"g": g},
        adjust_chunks={"b": 1},
        dtype=np.float64,
        meta=np.empty((0, 0, 0), np.float64),
    )
    return per_chunk.sum(axis=0, dtype=np.float64)


def column_totals(store: ResponsibilityStore, name: str, sign: Sign = "abs") -> dask.array.Array:
    """``Σ_m R[m, u]`` of every column: lazy ``(units,)`` float64."""
    return as_dask(store, name, sign).astype(np.float64).sum(axis=0, dtype=np.float64)


def _verified(block: np.ndarray, where: str) -> np.ndarray:
    # NaN is the fill value: R is never NaN, so NaN means a chunk the store lost.
    if np.isnan(block).any():
        raise StoreCorruptError(f"{where}: a chunk is missing (read as fill value)")
    return block


def _keys(block: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Value bits in the high half, ``n - 1 - id`` in the low half: one int64 orders by value, then smaller id.

    R is non-negative, so its float32 bit patterns order like the values (``+ 0.0`` turns -0.0 into +0.0), the
    same packing as :func:`responsibility.kernels.topk_desc`.
    """
    bits = (block + np.float32(0.0)).view(np.int32).astype(np.int64)
    return (bits << 32) | (n - 1 - rows)[:, None]


def _key_ids(top: np.ndarray, n: int) -> np.ndarray:
    return (n - 1) - (top & 0xFFFFFFFF)


def _key_values(top: np.ndarray) -> np.ndarray:
    return (top >> 32).astype(np.int32).view(np.float32)


def _group_block(block: np.ndarray, gid: np.ndarray, g: int) -> np.ndarray:
    import torch

    acc = torch.zeros((g, block.shape[1]), dtype=torch.float64)
    acc.index_add_(0, torch.from_numpy(np.ascontiguousarray(gid)), torch.from_numpy(block).double())
    return acc.numpy()[None]
