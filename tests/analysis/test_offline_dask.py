"""Dask reductions over folded R equal the store's NumPy path: values, top-k with ties, chunk boundaries, groups."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from responsibility import Layout, ParamSpec, RecordingSpec, ResponsibilityStore, StoreCorruptError, offline
from responsibility.analysis.groups import group_responsibility
from responsibility.recording.recorder import Recorder

dask = pytest.importorskip("dask")

N = 50  # example chunks of 16: blocks 16, 16, 16, 2
SCHEDULERS = ["synchronous", "threads"]


def _record(path, *, share: str = "full", fold: bool = True) -> ResponsibilityStore:
    """Examples 2i and 2i+1 always share a batch (equal R: ties); weight row 0 of ``w`` never moves (all zero)."""
    spec = RecordingSpec((ParamSpec("w", (7, 9)), ParamSpec("b", (5, 3), "neuron")), num_examples=N, batch_share=share)
    layout = Layout(chunk_steps=4, r_chunk_examples=16, r_chunk_units=8, topk=3)
    store = ResponsibilityStore.create(path, spec, layout=layout, labels=np.arange(N) % 4)
    w, b = torch.nn.Parameter(torch.zeros(7, 9)), torch.nn.Parameter(torch.zeros(5, 3))
    rec = Recorder(store, [(spec.params[0], w), (spec.params[1], b)], background=False)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        perm = torch.randperm(N // 2, generator=g)
        for i in range(0, N // 2, 5):
            pairs = perm[i : i + 5]
            rec.snapshot()
            with torch.no_grad():
                step = torch.randn(7, 9, generator=g) * (torch.rand(7, 9, generator=g) < 0.5)  # exact zeros too
                step[0] = 0
                w += step
                b += torch.randn(5, 3, generator=g)
            rec.record_step(torch.cat([2 * pairs, 2 * pairs + 1]))
    rec.close()
    if fold:
        store.fold()
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _record(tmp_path_factory.mktemp("offline") / "s.zarr")


@pytest.fixture(params=SCHEDULERS)
def scheduler(request):
    with dask.config.set(scheduler=request.param):
        yield request.param


@pytest.mark.parametrize("sign", ["abs", "pos", "neg"])
@pytest.mark.parametrize("name", ["w", "b"])
def test_as_dask_is_the_stored_r(store, scheduler, name, sign):
    x = offline.as_dask(store, name, sign)
    assert x.shape == (N, store.param(name).units) and x.dtype == np.float32
    assert x.chunks[0] == (16, 16, 16, 2)
    np.testing.assert_array_equal(x.compute(), store.read(name, sign).reshape(N, -1))


@pytest.mark.parametrize("sign", ["abs", "pos", "neg"])
@pytest.mark.parametrize("k", [1, 3, 17, N])  # 3: from the store's index; others computed; 17 > a chunk
def test_topk_matches_most_responsible_with_ties(store, scheduler, sign, k):
    for name in ("w", "b"):
        ids, vals = dask.compute(*offline.topk(store, name, k, sign, split_every=2))
        want_ids, want_vals = store.most_responsible(name, k, sign)
        np.testing.assert_array_equal(ids, want_ids.reshape(k, -1))
        np.testing.assert_array_equal(vals, want_vals.reshape(k, -1))
    r = store.read("w", sign).reshape(N, -1)
    ids = offline.topk(store, "w", k, sign)[0].compute()
    # The data really has ties: every id pair (2i, 2i+1) is equal, and the never-moved row is all zeros.
    assert np.array_equal(r[0::2], r[1::2])
    assert (r[:, :9] == 0).all() and (ids[:, :9] == np.arange(k)[:, None]).all()


def test_argmax_is_top1(store, scheduler):
    want = store.most_responsible("w", 1)[0].reshape(-1)
    np.testing.assert_array_equal(offline.argmax(store, "w").compute(), want)
    assert (want % 2 == 0).all()  # of a tied pair the smaller id wins


@pytest.mark.parametrize("sign", ["abs", "pos", "neg"])
def test_group_sums_and_column_totals(store, scheduler, sign):
    for name in ("w", "b"):
        got = offline.group_sums(store, name, sign=sign).compute()
        want = group_responsibility(store, name, sign=sign).reshape(4, -1)
        assert got.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)
        totals = offline.column_totals(store, name, sign).compute()
        np.testing.assert_allclose(totals, store.read(name, sign).reshape(N, -1).sum(0, dtype=np.float64), rtol=1e-14)
    groups = np.arange(N) // 10  # group boundaries that cut through example chunks
    got = offline.group_sums(store, "w", groups, num_groups=7, sign=sign).compute()
    want = group_responsibility(store, "w", groups, sign, num_groups=7).reshape(7, -1)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)
    assert (got[5:] == 0).all()


def test_mean_share_store(tmp_path):
    store = _record(tmp_path / "m.zarr", share="mean")
    ids, vals = dask.compute(*offline.topk(store, "w", 5))
    want_ids, want_vals = store.most_responsible("w", 5)
    np.testing.assert_array_equal(ids, want_ids.reshape(5, -1))
    np.testing.assert_array_equal(vals, want_vals.reshape(5, -1))


def test_lightning_store(tmp_path):
    """A store written by the callback (default layout: one example chunk) gives the same answers."""
    from helpers import IndexedData, TinyNet, make_trainer
    from torch.utils.data import DataLoader

    from responsibility import ResponsibilityCallback

    cb = ResponsibilityCallback(tmp_path / "s.zarr", fold="always")
    make_trainer(tmp_path, [cb], max_epochs=2).fit(TinyNet(), DataLoader(IndexedData(48), batch_size=8, shuffle=True))
    s = ResponsibilityStore.open(tmp_path / "s.zarr")
    for name in s.parameters:
        ids, vals = dask.compute(*offline.topk(s, name, 12))
        want_ids, want_vals = s.most_responsible(name, 12)
        np.testing.assert_array_equal(ids, want_ids.reshape(12, -1))
        np.testing.assert_array_equal(vals, want_vals.reshape(12, -1))
        np.testing.assert_allclose(
            offline.group_sums(s, name).compute(), group_responsibility(s, name).reshape(3, -1), rtol=1e-14
        )


def test_unfolded_and_stale_folds_are_refused(tmp_path):
    store = _record(tmp_path / "u.zarr", fold=False)
    with pytest.raises(offline.NotFoldedError, match=r"not folded; run store.fold\(\)"):
        offline.as_dask(store, "w")
    store.fold(["w"])
    w = torch.nn.Parameter(torch.zeros(7, 9))
    b = torch.nn.Parameter(torch.zeros(5, 3))
    rec = Recorder(store, [(store.spec.params[0], w), (store.spec.params[1], b)], background=False)
    rec.snapshot()
    with torch.no_grad():
        w += 1
    rec.record_step([0])
    rec.close()
    with pytest.raises(offline.NotFoldedError, match="covers 15 of 16 journal steps"):
        offline.topk(store, "w", 2)
    stale = offline.as_dask(store, "w", allow_stale=True).compute()
    assert stale.shape == (N, 63)
    with pytest.raises(ValueError, match="sign"):
        offline.as_dask(store, "w", "both")
    with pytest.raises(ValueError, match="k must be"):
        offline.topk(store, "b", N + 1)


def test_bad_groups(store):
    with pytest.raises(ValueError, match="integer group ids"):
        offline.group_sums(store, "w", np.zeros(N - 1, np.int64))
    with pytest.raises(ValueError, match="non-negative"):
        offline.group_sums(store, "w", -np.ones(N, np.int64))
    with pytest.raises(ValueError, match="num_groups=2"):
        offline.group_sums(store, "w", num_groups=2)


def test_missing_chunk_is_an_error(tmp_path):
    store = _record(tmp_path / "c.zarr")
    path = store.fold_array("w", "pos").path
    want = store.read("w", "pos").reshape(N, -1)
    os.remove(tmp_path / "c.zarr" / path / "c" / "1" / "2")
    x = offline.as_dask(store, "w", "pos")
    np.testing.assert_array_equal(x[:16].compute(), want[:16])  # other chunks fine
    with pytest.raises(StoreCorruptError, match="chunk is missing"):
        offline.topk(store, "w", 2, "pos")[0].compute()
