"""Top-k along examples against a stable descending sort: larger value first, then the smaller example id."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from responsibility.kernels import topk, topk_columns, topk_desc
from responsibility.kernels.topk import group_size


def stable_topk(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The expectation: numpy's stable argsort of the negated values, cut at k (-0.0 and 0.0 compare equal)."""
    order = np.argsort(-values, axis=0, kind="stable")[: min(k, len(values))]
    return order, np.take_along_axis(values, order, axis=0)


def drawn(rng: np.random.Generator, kind: str, n: int, c: int) -> np.ndarray:
    if kind == "ties":  # a few distinct values: ties everywhere, also across the k-th place
        return (rng.integers(0, 4, (n, c)) * (rng.random((n, c)) > 0.3)).astype(np.float32)
    if kind == "batches":  # one epoch of uniform attribution: every example of a batch has its batch's value
        batch = rng.permutation(n) // 8
        return rng.random((batch.max() + 1, c), dtype=np.float32)[batch]
    if kind == "signed zeros":
        return np.where(rng.random((n, c)) > 0.5, -0.0, 0.0).astype(np.float32)
    if kind == "infinities":
        out = rng.standard_normal((n, c)).astype(np.float32)
        out[rng.random((n, c)) > 0.8] = -np.inf
        out[rng.random((n, c)) > 0.9] = np.inf
        return out
    return rng.standard_normal((n, c)).astype(np.float32)


@pytest.mark.parametrize("kind", ["ties", "batches", "signed zeros", "infinities", "distinct"])
def test_matches_a_stable_sort_bit_for_bit(kind):
    rng = np.random.default_rng(len(kind))
    for _ in range(60):
        n, c, k = int(rng.integers(1, 300)), int(rng.integers(0, 7)), int(rng.integers(0, 25))
        a, b = drawn(rng, kind, n, c), drawn(rng, "ties", n, c)
        for parts in ([a], [a, b], [a, b, a]):
            total = parts[0].copy()
            for p in parts[1:]:
                total = total + p
            want_ids, want_vals = stable_topk(total, k)
            ids, vals = topk_columns([torch.from_numpy(p) for p in parts], k)
            np.testing.assert_array_equal(ids.numpy(), want_ids)
            np.testing.assert_array_equal(vals.numpy().view(np.int32), want_vals.view(np.int32))


def test_large_block_with_crowded_ties():
    """Many groups share the k-th group maximum (a batch spread over the whole block): the pruned path."""
    rng = np.random.default_rng(1)
    n, c, k = 20_000, 33, 10
    assert group_size(n, k) > 1
    values = drawn(rng, "batches", n, c)
    values[:, 0] = 0.0  # a column that never changed: the answer is ids 0..k-1
    want_ids, want_vals = stable_topk(values, k)
    ids, vals = topk_columns(torch.from_numpy(values), k)
    np.testing.assert_array_equal(ids.numpy(), want_ids)
    np.testing.assert_array_equal(vals.numpy(), want_vals)
    assert ids[:, 0].tolist() == list(range(k))


def test_sums_formed_block_by_block(monkeypatch):
    """A sum of parts wider than the cache budget is formed a few groups at a time, the last block short."""
    rng = np.random.default_rng(2)
    n, c, k = 5_003, 7, 4
    g = group_size(n, k)
    monkeypatch.setattr(topk, "SUM_BLOCK_BYTES", 4 * c * g * 5)  # five groups per block
    parts = [drawn(rng, "batches", n, c), drawn(rng, "ties", n, c)]
    want_ids, want_vals = stable_topk(parts[0] + parts[1], k)
    ids, vals = topk_columns([torch.from_numpy(p) for p in parts], k)
    np.testing.assert_array_equal(ids.numpy(), want_ids)
    np.testing.assert_array_equal(vals.numpy(), want_vals)


def test_topk_desc_keeps_trailing_shape_and_refuses_other_dtypes():
    values = torch.tensor([[[1.0, 2.0]], [[3.0, 2.0]], [[3.0, 0.0]]])
    ids, vals = topk_desc(values, 2)
    assert ids.shape == vals.shape == (2, 1, 2)
    assert ids[:, 0, 0].tolist() == [1, 2] and ids[:, 0, 1].tolist() == [0, 1]
    with pytest.raises(TypeError):
        topk_desc(values.double(), 2)
    with pytest.raises(TypeError):
        topk_columns([values[:, 0], values[:2, 0]], 1)
