"""R summed while recording equals R folded from the journal afterwards, bit for bit, and is used only when valid."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from helpers import TinyNet, assert_same_store, loader_48, make_trainer

from responsibility import ResponsibilityCallback
from responsibility.recording.recorder import Recorder
from responsibility.recording.store_policy import running_sums
from responsibility.store import Layout, ResponsibilityStore, RunningSums
from responsibility.store import _fold as fold_module
from responsibility.store.spec import ParamSpec, RecordingSpec

N = 13
SPECS = (ParamSpec("w", (4, 6)), ParamSpec("u", (5, 3), "neuron"))


def record(
    path,
    *,
    sums: bool,
    batch_share: str = "full",
    journal_dtype: str = "float32",
    steps: int = 20,
    background: bool = False,
):
    """One run (random Δw and batches, repeated ids, one non-finite step, a flush mid-chunk) into a new store."""
    spec = RecordingSpec(SPECS, num_examples=N, batch_share=batch_share)
    store = ResponsibilityStore.create(path, spec, layout=Layout(chunk_steps=3, topk=4, journal_dtype=journal_dtype))
    params = [torch.nn.Parameter(torch.zeros(s.shape)) for s in SPECS]
    rng = np.random.default_rng(0)
    rec = Recorder(
        store,
        list(zip(SPECS, params, strict=True)),
        background=background,
        sums=store.running_sums() if sums else None,
    )
    with pytest.warns(RuntimeWarning, match=r"non-finite weight change at journal step\(s\) \[5\]"):
        for t in range(steps):
            with torch.no_grad():
                if t == 6:
                    for p in params:
                        p.zero_()
                rec.snapshot()
                for p in params:
                    p.add_(torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32)))
                    if t == 5:
                        p[0] = float("nan")  # this step is journaled as zeros and flagged
            rec.record_step(rng.integers(0, N, size=int(rng.integers(1, 7))), t, t // 7)
            if t == 7:
                rec.flush()  # a partial chunk row, written again whole when it fills up
        rec.close()
    return store, rec.sums


@pytest.mark.parametrize("batch_share", ["full", "mean"])
@pytest.mark.parametrize("journal_dtype", ["float32", "bfloat16"])
def test_running_sums_fold_equals_the_journal_fold(tmp_path, monkeypatch, batch_share, journal_dtype):
    summed, sums = record(tmp_path / "a.zarr", sums=True, batch_share=batch_share, journal_dtype=journal_dtype)
    folded, _ = record(tmp_path / "b.zarr", sums=False, batch_share=batch_share, journal_dtype=journal_dtype)
    assert sums is not None and (sums.start, sums.stop) == (0, summed.steps)
    folded.fold()

    def no_journal(*args, **kwargs):
        raise AssertionError("the fold read the journal although running sums covered it")

    monkeypatch.setattr(fold_module, "accumulate", no_journal)
    summed.fold(sums=sums)
    assert all(summed.folded_steps(s.name) == summed.steps for s in SPECS)
    assert_same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")
    assert not np.array_equal(summed.read("w"), 0)


def test_sums_that_miss_steps_are_not_used(tmp_path):
    store, sums = record(tmp_path / "a.zarr", sums=True)
    rows, ids, steps = store.journal_rows(0, 3)
    with pytest.raises(ValueError, match="cover steps"):
        sums.add(store.steps + 1, rows, ids, 0, steps)  # a gap
    late = store.running_sums()  # starts at the store's 20 recorded steps: not R of the whole journal
    assert late.take("w", store.steps) is None
    reference, _ = record(tmp_path / "b.zarr", sums=False)
    reference.fold()
    store.fold(sums=late)  # falls back to the journal
    assert_same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")


@pytest.mark.parametrize("attribution", ["auto", "uniform"])
def test_callback_fold_at_end_from_running_sums_equals_a_later_fold(tmp_path, attribution):
    """Per-unit shares, outer-product factors and dense bias gradients (auto), or uniform: the store a fit folds
    at its end from running sums equals the one folded from the journal after the same fit."""
    stores = {}
    for fold in ("auto", "never"):
        stores[fold] = tmp_path / f"{fold}.zarr"
        cb = ResponsibilityCallback(
            stores[fold], granularity={"*": "neuron", "net.2": "weight"}, attribution=attribution, fold=fold
        )
        torch.manual_seed(0)
        make_trainer(tmp_path / fold, [cb]).fit(TinyNet(), loader_48())
    later = ResponsibilityStore.open(stores["never"], mode="r+")
    assert later.folded_steps("net.0.weight") == 0
    later.fold()
    assert ResponsibilityStore.open(stores["auto"]).folded_steps("net.0.weight") == later.steps
    assert_same_store(stores["auto"], stores["never"])


def test_sums_are_kept_only_for_a_new_store_folded_at_the_end_with_r_within_a_quarter_of_the_budget(tmp_path):
    spec = RecordingSpec(SPECS, num_examples=N)
    store = ResponsibilityStore.create(tmp_path / "s.zarr", spec, layout=Layout(chunk_steps=3))
    r_bytes = 8 * N * sum(s.units for s in SPECS)  # both signs, float32
    assert running_sums(store, "auto", 4 * r_bytes) is not None
    assert running_sums(store, "always", 4 * r_bytes) is not None
    assert running_sums(store, "auto", 4 * r_bytes - 4) is None  # R held all run long: a quarter of the budget
    assert running_sums(store, "never", 4 * r_bytes) is None
    recorded, _ = record(tmp_path / "r.zarr", sums=False)
    assert running_sums(recorded, "auto", 4 * r_bytes) is None  # a resumed store: R needs its earlier steps


def test_the_writer_sums_on_one_torch_thread_and_leaves_other_threads_alone(tmp_path, monkeypatch):
    """Training keeps every core busy, so the background writer's torch work (the running sums, the bfloat16
    rounding) runs on the writer's thread alone; the training thread and threads started later keep torch's count.
    The sums are those of a recorder without a writer thread."""
    seen: list[tuple[str, int]] = []
    add = RunningSums.add

    def spy(self, *args, **kwargs):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return add(self, *args, **kwargs)

    monkeypatch.setattr(RunningSums, "add", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    later: list[int] = []
    try:
        summed, sums = record(tmp_path / "a.zarr", sums=True, journal_dtype="bfloat16", background=True)
        assert torch.get_num_threads() == 2
        started = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        started.start()
        started.join()
    finally:
        torch.set_num_threads(threads)
    assert later == [2]
    assert len(seen) > 1 and all(name.startswith("responsibility-writer") and n == 1 for name, n in seen), seen

    foreground, reference = record(tmp_path / "b.zarr", sums=True, journal_dtype="bfloat16")
    assert sums is not None and reference is not None
    summed.fold(sums=sums)
    foreground.fold(sums=reference)
    assert_same_store(summed.path, foreground.path)
