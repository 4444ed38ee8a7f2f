"""The fold commits one parameter at a time, stops cleanly on Ctrl-C, cleans up after killed folds, and leaves a
store that xarray reads as it is (dimension names, a pointer to the current fold)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
import zarr
from helpers import naive_r

from responsibility.errors import StoreCorruptError
from responsibility.recording.recorder import Recorder
from responsibility.store import Layout, ResponsibilityStore, _fold
from responsibility.store.spec import ParamSpec, RecordingSpec

N = 11
SPECS = (ParamSpec("a", (2, 3)), ParamSpec("b", (4, 5)), ParamSpec("c", (3,), "neuron"))


def record(path, steps: int = 9, topk_signs=("abs",), **create) -> ResponsibilityStore:
    spec = RecordingSpec(SPECS, num_examples=N)
    layout = Layout(chunk_steps=4, topk=3, topk_signs=topk_signs, r_chunk_units=1, r_chunk_examples=4)
    store = ResponsibilityStore.create(path, spec, layout=layout, **create)
    params = [torch.nn.Parameter(torch.zeros(s.shape)) for s in SPECS]
    rec = Recorder(store, list(zip(SPECS, params, strict=True)), background=False)
    rng = np.random.default_rng(0)
    for t in range(steps):
        rec.snapshot()
        with torch.no_grad():
            for p in params:
                p.add_(torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32)))
        rec.record_step(rng.choice(N, size=4, replace=False), t, t // 4)
    rec.close()
    return store


def interrupt_at(monkeypatch, name: str, call: int) -> None:
    """Send this process SIGINT during the ``call``-th summed block of parameter ``name`` (1-based)."""
    real, calls = _fold.accumulate, []

    def accumulate(journal, p, *args, **kwargs):
        if p.name == name:
            calls.append(1)
            if len(calls) == call:
                os.kill(os.getpid(), signal.SIGINT)
        return real(journal, p, *args, **kwargs)

    monkeypatch.setattr(_fold, "accumulate", accumulate)


def test_ctrl_c_keeps_finished_parameters_and_leaves_no_half_fold(tmp_path, monkeypatch):
    store = record(tmp_path / "s.zarr")
    interrupt_at(monkeypatch, "b", call=2)
    # A tiny budget: one column per block, so "b" is interrupted between its blocks.
    with pytest.raises(KeyboardInterrupt, match="fold of 'b' interrupted"):
        store.fold(budget_bytes=1)
    assert [store.folded_steps(n) for n in ("a", "b", "c")] == [9, 0, 0]
    assert store.orphans() == [] and not (tmp_path / "s.zarr" / "fold" / "b" / f"g{store.generation + 1}").exists()
    reopened = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert reopened.folded_steps("a") == 9
    monkeypatch.undo()
    report = store.fold()
    assert report.parameters == ["a", "b", "c"] and [store.folded_steps(n) for n in "abc"] == [9, 9, 9]
    for name in "abc":
        for sign in ("pos", "neg", "abs"):
            got = store.read(name, sign).reshape(N, -1)
            np.testing.assert_allclose(got, naive_r(store, name, sign), rtol=1e-5, atol=1e-7)


def test_a_failed_write_keeps_the_parameters_written_before_it(tmp_path, monkeypatch):
    """Writes run in a background thread: a failed write removes its parameter's unfinished generation and keeps
    the parameters committed before it."""
    store = record(tmp_path / "s.zarr")
    real = _fold._write_block

    def write_block(out, cols, stored):
        if "/b/" in out["pos"].path:
            raise OSError("disk full")
        real(out, cols, stored)

    monkeypatch.setattr(_fold, "_write_block", write_block)
    with pytest.raises(OSError, match="disk full"):
        store.fold()
    assert [store.folded_steps(n) for n in "abc"] == [9, 0, 0]
    assert store.orphans() == []
    assert not list((tmp_path / "s.zarr" / "fold").glob("[bc]/g*"))  # no generation of b or c is left
    np.testing.assert_allclose(store.read("a", "abs").reshape(N, -1), naive_r(store, "a", "abs"), rtol=1e-5)


def test_each_generation_is_named_for_the_manifest_generation_that_commits_it(tmp_path):
    store = record(tmp_path / "s.zarr")
    store.fold(["b"])
    before = store.generation
    store.fold()  # a and c are new; b is folded already
    assert store.generation == before + 2
    assert [store.fold_group(n) for n in "abc"] == [
        f"fold/a/g{before + 1}",
        f"fold/b/g{before}",
        f"fold/c/g{before + 2}",
    ]
    reopened = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert [reopened.fold_group(n) for n in "abc"] == [store.fold_group(n) for n in "abc"]


def test_orphans_are_listed_and_the_next_fold_removes_them(tmp_path):
    store = record(tmp_path / "s.zarr")
    store.fold(["a"])
    # What a killed fold leaves: a generation the manifest never referenced.
    zarr.open_group(tmp_path / "s.zarr", mode="r+").require_group("fold/b/g99").create_array(
        "pos", shape=(N, 20), dtype="float32"
    )
    store.refresh()
    assert store.orphans() == ["fold/b/g99"] and store.summary()["orphans"] == ["fold/b/g99"]
    store.fold(["c"])
    assert store.orphans() == [] and not (tmp_path / "s.zarr" / "fold" / "b" / "g99").exists()
    assert store.folded_steps("a") == store.folded_steps("c") == 9  # committed folds are not orphans


@pytest.mark.parametrize("signs", [("abs",), ("pos", "neg"), ("abs", "pos", "neg")])
def test_fold_plan_counts_what_a_fold_writes(tmp_path, signs):
    store = record(tmp_path / "s.zarr", topk_signs=signs)
    plan = store.fold_plan()
    units = [6, 20, 3]
    assert plan.parameters == ["a", "b", "c"]
    assert plan.r_bytes == sum(2 * 4 * N * u for u in units)
    assert plan.cells == 9 * 4 * sum(units)  # 9 steps of 4 ids
    assert plan.topk_bytes == sum(len(signs) * 3 * u * 12 for u in units)  # ids and values, depth 3, per sign
    report = store.fold(["a"])
    assert report.cells == 9 * 4 * 6 and report.r_bytes == 2 * 4 * N * 6
    assert store.fold_plan().parameters == ["b", "c"]
    written = sorted(zarr.open_group(tmp_path / "s.zarr")[store.fold_group("a")].array_keys())
    assert written == sorted(["pos", "neg", *(f"top_{s}_{kind}" for s in signs for kind in ("ids", "values"))])


def test_xarray_opens_the_store_and_finds_the_current_fold(tmp_path):
    xr = pytest.importorskip("xarray")
    store = record(tmp_path / "s.zarr", labels=np.arange(N) % 3, class_names=["x", "y", "z"])
    store.fold()
    tree = xr.open_datatree(tmp_path / "s.zarr", engine="zarr", consolidated=False)
    assert tree["labels"].dims == ("example",)
    assert tree["journal"]["rows"].dims == ("step", "column")
    for name in "abc":
        current = tree["fold"][name].attrs["current"]
        assert f"fold/{name}/{current}" == store.fold_group(name)
        ds = xr.open_zarr(tmp_path / "s.zarr", group=store.fold_group(name), consolidated=False)
        assert ds["pos"].dims == ("example", "unit") and ds["top_abs_ids"].dims == ("rank", "unit")
        np.testing.assert_array_equal(ds["pos"].values, store.read(name, "pos").reshape(N, -1))
        np.testing.assert_array_equal(ds["top_abs_ids"].values, store.topk_index(name, "abs")[0])


def test_rollback_clears_the_pointer_of_a_dropped_fold(tmp_path):
    store = record(tmp_path / "s.zarr")
    store.fold(["a"])
    store.rollback(5)
    assert store.fold_group("a") is None
    assert zarr.open_group(tmp_path / "s.zarr")["fold/a"].attrs["current"] is None
    assert store.orphans() == [f"fold/a/g{store.generation - 1}"]


def test_class_names(tmp_path):
    store = record(tmp_path / "s.zarr", labels=np.arange(N) % 3, class_names=["cat", "dog", "eel"])
    reopened = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert reopened.class_names == ["cat", "dog", "eel"] and reopened.class_name(1) == "dog"
    assert reopened.class_name(7) == "7" and store.summary()["class_names"] == ["cat", "dog", "eel"]
    assert record(tmp_path / "t.zarr").class_names is None
    with pytest.raises(ValueError, match="do not cover the labels"):
        record(tmp_path / "u.zarr", labels=np.arange(N) % 3, class_names=["cat", "dog"])
    with pytest.raises(ValueError, match="sequence of strings"):
        record(tmp_path / "v.zarr", class_names="cat")


def test_class_names_are_covered_by_the_metadata_digest(tmp_path):
    import json

    record(tmp_path / "s.zarr", labels=np.arange(N) % 3, class_names=["cat", "dog", "eel"])
    meta_path = tmp_path / "s.zarr" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["responsibility"]["class_names"] = ["cat", "dog", "<script>"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreCorruptError, match="digest"):
        ResponsibilityStore.open(tmp_path / "s.zarr")
