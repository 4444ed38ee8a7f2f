"""``most_responsible(..., weights=...)``: the top-k of chosen columns, from the index or from R of just them.

Weight changes are small multiples of 1/4, so every sum is exact in float32 and ties are real; the expectation is
a float64 fold of the journal by plain loops and a stable descending sort (larger value first, then smaller id).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import naive_r

from responsibility.choices import SIGNS
from responsibility.recording.recorder import Recorder
from responsibility.store import Layout, ResponsibilityStore, _read
from responsibility.store.spec import ParamSpec, RecordingSpec

N = 9
SHAPE = (3, 5)


def record(
    path, steps: int, topk: int = 3, seed: int = 0, topk_signs=("abs",)
) -> tuple[ResponsibilityStore, Recorder, torch.Tensor]:
    spec = RecordingSpec((ParamSpec("w", SHAPE),), num_examples=N)
    layout = Layout(chunk_steps=2, topk=topk, topk_signs=topk_signs, r_chunk_units=4)
    store = ResponsibilityStore.create(path, spec, layout=layout)
    w = torch.nn.Parameter(torch.zeros(SHAPE))
    rec = Recorder(store, [(store.param("w"), w)], background=False)
    more(rec, w, steps, seed)
    return store, rec, w


def more(rec: Recorder, w: torch.Tensor, steps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rec.snapshot()
        with torch.no_grad():
            w.add_(torch.from_numpy(rng.integers(-3, 4, SHAPE).astype(np.float32) / 4))
        rec.record_step(rng.choice(N, size=3, replace=False))
    rec.flush()


def expected(store: ResponsibilityStore, sign: str, k: int, weights: list[int]) -> tuple[np.ndarray, np.ndarray]:
    r = naive_r(store, "w", sign)[:, weights]
    order = np.argsort(-r, axis=0, kind="stable")[:k]
    return order, np.take_along_axis(r, order, axis=0)


WEIGHTS = [7, 2, 2, 14, 0, 3]  # unsorted, with a repeat and a run (2, 3)


@pytest.mark.parametrize("indexed", [("abs",), SIGNS])
@pytest.mark.parametrize("sign", SIGNS)
def test_unfolded_folded_and_partly_folded_agree_with_naive(tmp_path, sign, indexed):
    store, rec, w = record(tmp_path / "s.zarr", steps=7, topk_signs=indexed)
    answers = [store.most_responsible("w", 3, sign, weights=WEIGHTS)]  # journal only
    store.fold()
    assert (store.topk_index("w", sign) is not None) == (sign in indexed)
    answers.append(store.most_responsible("w", 3, sign, weights=WEIGHTS))  # the top-k index, or folded R
    answers.append(store.most_responsible("w", N, sign, weights=WEIGHTS))  # deeper than the index: from R
    for ids, vals in answers:
        want_ids, want_vals = expected(store, sign, len(ids), WEIGHTS)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(vals, want_vals.astype(np.float32))
        assert ids.shape == vals.shape == (len(ids), len(WEIGHTS))
    more(rec, w, 3, seed=1)  # the fold is now older than the journal
    ids, vals = store.most_responsible("w", 3, sign, weights=WEIGHTS, budget_bytes=N * 20 * 2)  # blocks of 2
    want_ids, want_vals = expected(store, sign, 3, WEIGHTS)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(vals, want_vals.astype(np.float32))


def test_whole_parameter_shape_is_unchanged(tmp_path):
    store, _, _ = record(tmp_path / "s.zarr", steps=5)
    ids, vals = store.most_responsible("w", 2)
    assert ids.shape == vals.shape == (2, *SHAPE)
    want_ids, want_vals = expected(store, "abs", 2, list(range(15)))
    np.testing.assert_array_equal(ids.reshape(2, -1), want_ids)
    np.testing.assert_array_equal(vals.reshape(2, -1), want_vals.astype(np.float32))


def test_index_serves_when_current_and_only_asked_columns_are_summed(tmp_path, monkeypatch):
    """Folded and deep enough: nothing is summed. Otherwise only the asked columns are."""
    store, rec, w = record(tmp_path / "s.zarr", steps=5)
    summed: list[object] = []
    real = _read.accumulate

    def spy(journal, p, cols, *args, **kwargs):
        summed.append(cols)
        return real(journal, p, cols, *args, **kwargs)

    monkeypatch.setattr(_read, "accumulate", spy)
    store.most_responsible("w", 2, weights=[4, 11])
    assert [list(c) for c in summed] == [[4, 11]]
    store.fold()
    summed.clear()
    store.most_responsible("w", 3, weights=[4, 11])
    assert summed == []  # served from the index
    assert store.topk_index("w", "abs", np.array([4, 11])) is not None
    more(rec, w, 1, seed=2)
    assert store.topk_index("w", "abs", np.array([4, 11])) is None  # stale index: not usable
    store.most_responsible("w", 3, weights=[5, 6])
    assert summed == [slice(5, 7)]  # a run of columns is read as a slice


def test_empty_and_invalid_weights(tmp_path):
    store, _, _ = record(tmp_path / "s.zarr", steps=3)
    ids, vals = store.most_responsible("w", 2, weights=[])
    assert ids.shape == vals.shape == (2, 0)
    with pytest.raises(IndexError, match="outside"):
        store.most_responsible("w", 2, weights=[15])
    with pytest.raises(ValueError, match="1-D"):
        store.most_responsible("w", 2, weights=[[1]])
    with pytest.raises(ValueError, match="k must be"):
        store.most_responsible("w", N + 1, weights=[1])
