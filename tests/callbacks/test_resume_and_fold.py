"""Resume gives the uninterrupted store; folding at once, in pieces, twice or lazily gives the same R."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from helpers import NaiveReference, TinyNet, assert_same_store, fit_resumable, loader_48, make_trainer

from responsibility import ResponsibilityCallback, ResponsibilityStore
from responsibility.kernels import topk_desc

N = 48


def test_resume_from_epoch_checkpoint_equals_uninterrupted(tmp_path):
    fit_resumable(tmp_path / "a", tmp_path / "a.zarr", 2)
    fit_resumable(tmp_path / "b", tmp_path / "b.zarr", 1)
    fit_resumable(tmp_path / "b", tmp_path / "b.zarr", 2, ckpt_path=tmp_path / "b" / "ckpt" / "last.ckpt")
    assert ResponsibilityStore.open(tmp_path / "b.zarr").steps == 20
    assert_same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")


def test_resume_from_mid_epoch_checkpoint_rolls_back_newer_steps(tmp_path):
    """The store ran 13 steps past a step-7 checkpoint; resuming from it must not count steps 8.. twice."""
    opts = dict(attribution="uniform", journal_buffer_mb=0.002)
    fit_resumable(tmp_path / "b", tmp_path / "b.zarr", 2, every_n_train_steps=7, **opts)
    ckpt = tmp_path / "b" / "ckpt" / "epoch=0-step=7.ckpt"
    assert ckpt.exists()
    first = ResponsibilityStore.open(tmp_path / "b.zarr")
    assert first.steps == 20 and 7 % first.layout.chunk_steps != 0  # resumes mid-chunk: preload path
    first_rows, first_ids, _ = first.journal_rows(0, 7)
    shutil.copytree(tmp_path / "b.zarr", tmp_path / "first7.zarr")
    head = ResponsibilityStore.open(tmp_path / "first7.zarr", mode="r+")
    head.rollback(7)
    head_r = {n: head.read(n) for n in head.parameters}

    ref = NaiveReference(N)
    cb = ResponsibilityCallback(tmp_path / "b.zarr", **opts)
    torch.manual_seed(0)
    make_trainer(tmp_path / "b", [cb, ref], max_epochs=2).fit(TinyNet(), loader_48(), ckpt_path=ckpt)

    s = ResponsibilityStore.open(tmp_path / "b.zarr")
    resumed_steps = len(s.meta()) - 7
    assert resumed_steps > 0
    assert s.meta()[:, 0].tolist() == list(range(1, s.steps + 1))  # global steps continue, none repeated
    rows, ids, _ = s.journal_rows(0, 7)
    np.testing.assert_array_equal(ids, first_ids)
    np.testing.assert_array_equal(rows, first_rows)
    for name in s.parameters:
        np.testing.assert_allclose(s.read(name), head_r[name] + ref.get(name, "abs"), rtol=2e-5, atol=1e-8)


def test_fold_in_pieces_twice_and_lazily_is_bit_identical(tmp_path):
    fit_resumable(tmp_path / "a", tmp_path / "a.zarr", 2, fold="never")
    lazy = ResponsibilityStore.open(tmp_path / "a.zarr")
    assert lazy.folded_steps("net.0.weight") == 0
    lazy_r = {n: lazy.read(n, "pos") for n in lazy.parameters}
    shutil.copytree(tmp_path / "a.zarr", tmp_path / "pieces.zarr")

    whole = ResponsibilityStore.open(tmp_path / "a.zarr", mode="r+")
    whole.fold()
    whole.fold()  # nothing new: a no-op

    pieces = ResponsibilityStore.open(tmp_path / "pieces.zarr", mode="r+")
    steps, num_ids = pieces.steps, pieces.num_ids
    pieces.rollback(7)  # fold the first 7 steps only...
    pieces.fold(budget_bytes=4096)  # ...in tiny column and step blocks
    pieces.commit(steps, num_ids)  # ...then the rest
    assert pieces.folded_steps("net.0.weight") == 7
    pieces.fold(parameters=["net.0.weight"])
    pieces.fold()
    for n in whole.parameters:
        np.testing.assert_array_equal(whole.read(n, "pos"), lazy_r[n])
        for sign in ("abs", "pos", "neg"):
            np.testing.assert_array_equal(whole.read(n, sign), pieces.read(n, sign))


def test_fold_report_says_what_the_fit_end_fold_did(tmp_path):
    cb = ResponsibilityCallback(tmp_path / "s.zarr", attribution="uniform")  # fold="auto": R is tiny
    torch.manual_seed(0)
    make_trainer(tmp_path, [cb]).fit(TinyNet(), loader_48())
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    report = cb.fold_report
    assert report is not None
    assert report.steps == store.steps == 2 * 10  # 2 epochs of 48 examples in batches of 5
    assert sorted(report.parameters) == sorted(store.parameters)
    assert all(store.folded_steps(name) == store.steps for name in store.parameters)
    units = sum(store.spec.param(name).units for name in store.parameters)
    assert report.r_bytes == 2 * 4 * N * units  # R_pos and R_neg, float32, uncompressed
    assert report.seconds > 0

    unfolded = ResponsibilityCallback(tmp_path / "t.zarr", attribution="uniform", fold="never")
    make_trainer(tmp_path, [unfolded]).fit(TinyNet(), loader_48())
    assert unfolded.fold_report is None


def test_lazy_partial_fold_matches_reference(tmp_path):
    """R read while only part of the journal is folded = folded part + journal remainder."""
    ref = NaiveReference(N)
    cb = ResponsibilityCallback(tmp_path / "s.zarr", fold="never", attribution="uniform")
    torch.manual_seed(0)
    make_trainer(tmp_path, [cb, ref]).fit(TinyNet(), loader_48())
    s = ResponsibilityStore.open(tmp_path / "s.zarr", mode="r+")
    total, num_ids = s.steps, s.num_ids
    s.rollback(5)
    s.fold(parameters=["net.2.weight"])
    s.commit(total, num_ids)
    assert 0 < s.folded_steps("net.2.weight") < s.steps
    np.testing.assert_allclose(s.read("net.2.weight"), ref.get("net.2.weight", "abs"), rtol=2e-5, atol=1e-8)
    cols = np.array([0, 7, 17])
    np.testing.assert_array_equal(s.read("net.2.weight", weights=cols), s.read("net.2.weight").reshape(N, -1)[:, cols])


@pytest.mark.parametrize("k", [1, 3, 10, 25])
def test_most_responsible_matches_stable_sort(tmp_path, k):
    fit_resumable(tmp_path / "a", tmp_path / "a.zarr", 1, topk=10)
    s = ResponsibilityStore.open(tmp_path / "a.zarr")
    for sign in ("abs", "pos", "neg"):
        r = s.read("net.0.weight", sign).reshape(N, -1).astype(np.float64)
        ids, vals = s.most_responsible("net.0.weight", k=k, sign=sign)
        assert ids.shape == (k, 6, 8)
        # reference: stable sort by descending value keeps the smaller id first among ties
        order = np.argsort(-r, axis=0, kind="stable")[:k]
        np.testing.assert_array_equal(ids.reshape(k, -1), order)
        np.testing.assert_array_equal(vals.reshape(k, -1), np.take_along_axis(r, order, 0).astype(np.float32))


def test_topk_desc_ties_and_zeros():
    v = torch.tensor([[0.0, 2.0], [3.0, 2.0], [3.0, -0.0], [1.0, 2.0]])
    ids, vals = topk_desc(v.abs(), 4)
    assert ids[:, 0].tolist() == [1, 2, 3, 0]
    assert ids[:, 1].tolist() == [0, 1, 3, 2]
    assert vals[:, 0].tolist() == [3.0, 3.0, 1.0, 0.0]


def test_topk_rows_matches_stable_sort_with_heavy_ties():
    """Rows tied across the cut (as after one epoch, where a whole batch shares one R value) and without ties."""
    from responsibility.kernels import topk_rows

    rng = np.random.default_rng(3)
    for trial in range(200):
        n, m = int(rng.integers(1, 60)), int(rng.integers(1, 5))
        k = int(rng.integers(1, n + 1))
        if trial % 3 == 0:
            v = rng.choice(np.array([0.0, 0.5, 1.0, 2.0], np.float32), size=(m, n))
        elif trial % 3 == 1:
            v = np.repeat(rng.random((m, (n + 7) // 8), dtype=np.float32), 8, axis=1)[:, :n]  # batches of 8
        else:
            v = rng.random((m, n), dtype=np.float32)
        ids, vals = topk_rows(torch.from_numpy(np.ascontiguousarray(v)), k)
        order = np.argsort(-v, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(ids.numpy(), order)
        np.testing.assert_array_equal(vals.numpy(), np.take_along_axis(v, order, 1))


def test_callback_bfloat16_journal_is_within_its_stated_error(tmp_path):
    """journal_dtype="bfloat16" from the callback: the store says so, and R stays within 2^-8 (relative, per step's
    Δw, summed) of the exact float32 journal of the same run."""
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        cb = ResponsibilityCallback(tmp_path / f"{dtype}.zarr", attribution="uniform", journal_dtype=dtype)
        make_trainer(tmp_path / dtype, [cb]).fit(TinyNet(), loader_48())
    exact = ResponsibilityStore.open(tmp_path / "float32.zarr")
    compact = ResponsibilityStore.open(tmp_path / "bfloat16.zarr")
    assert (exact.layout.journal_dtype, compact.layout.journal_dtype) == ("float32", "bfloat16")
    differs = False
    for name in exact.parameters:
        for sign in ("pos", "neg"):
            r, c = exact.read(name, sign), compact.read(name, sign)
            # Each step's |Δw| is rounded to bfloat16 (relative error <= 2^-8) before the sum of non-negative
            # terms, so the sum is within 2^-8 of R (plus float32 summation noise).
            assert np.all(np.abs(c - r) <= 2**-8 * np.abs(r) * (1 + 1e-4) + 1e-12), (name, sign)
            differs |= not np.array_equal(c, r)
    assert differs  # the compact journal was really used
