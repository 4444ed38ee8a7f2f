"""Opt-in float16 storage of the folded R: bounded error, exact rankings, never a rounded running sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from responsibility.choices import SIGNS
from responsibility.recording.recorder import Recorder
from responsibility.store import Layout, ResponsibilityStore
from responsibility.store.spec import ParamSpec, RecordingSpec

N, SHAPE = 12, (5, 7)


def record(path, r_dtype, steps, start=0, store=None):
    """Record ``steps`` identical journal steps (seeded) into a new store, or into ``store`` from ``start``."""
    w = torch.nn.Parameter(torch.zeros(SHAPE))
    spec = RecordingSpec((ParamSpec("w", SHAPE), ParamSpec("u", SHAPE, "neuron")), num_examples=N)
    if store is None:
        layout = Layout(chunk_steps=3, topk=4, topk_signs=SIGNS, r_dtype=r_dtype)
        store = ResponsibilityStore.create(path, spec, layout=layout)
    u = torch.nn.Parameter(torch.zeros(SHAPE))
    rec = Recorder(store, [(spec.params[0], w), (spec.params[1], u)], background=False)
    rng = np.random.default_rng(0)
    for t in range(steps):
        scale = 10.0 ** rng.uniform(-9, 1, size=SHAPE)  # magnitudes across float16's subnormal and normal range
        delta = torch.from_numpy((rng.standard_normal(SHAPE) * scale).astype(np.float32))
        ids = rng.integers(0, N, size=int(rng.integers(1, 5)))
        if t < start:
            continue
        rec.snapshot()
        with torch.no_grad():
            w.add_(delta)
            u.sub_(delta)
        rec.record_step(ids)
    rec.close()
    return store


def test_float16_r_error_bound_and_exact_rankings(tmp_path):
    exact = record(tmp_path / "f32.zarr", "float32", 20)
    lossy = record(tmp_path / "f16.zarr", "float16", 20)
    exact.fold()
    lossy.fold()
    assert str(lossy.fold_array("w", "pos").dtype) == "float16"
    cells = N * 5 * 7  # "w": one column per weight; "u" (neuron granularity): one per unit, 5
    assert [p["r_bytes"] for p in exact.summary()["parameters"]] == [2 * 4 * cells, 2 * 4 * N * 5]
    assert [p["r_bytes"] for p in lossy.summary()["parameters"]] == [2 * 2 * cells, 2 * 2 * N * 5]
    for name in ("w", "u"):
        for sign in ("abs", "pos", "neg"):
            want = exact.read(name, sign).astype(np.float64)
            got = lossy.read(name, sign).astype(np.float64)
            bound = np.maximum(np.abs(want) * 2.0**-11, 2.0**-25) * (2 if sign == "abs" else 1)
            assert np.all(np.abs(got - want) <= bound), (name, sign)
            # the top-k index (here of every sign) is built from float32 sums before rounding: as the exact store's
            for a, b in zip(exact.most_responsible(name, 4, sign), lossy.most_responsible(name, 4, sign), strict=True):
                np.testing.assert_array_equal(a, b)


def test_float16_never_accumulates_onto_rounded_sums(tmp_path):
    lossy = record(tmp_path / "f16.zarr", "float16", 12)
    lossy.fold()  # folded after 12 steps, then 8 more are recorded
    record(None, "float16", 20, start=12, store=ResponsibilityStore.open(tmp_path / "f16.zarr", mode="r+"))
    record(tmp_path / "twin.zarr", "float16", 12)  # the same 20 steps, folded only once at the end
    record(None, "float16", 20, start=12, store=ResponsibilityStore.open(tmp_path / "twin.zarr", mode="r+"))
    # The reference is recorded in the same two phases (the second starts from fresh weights, as a resume might).
    exact = record(tmp_path / "f32.zarr", "float32", 12)
    record(None, "float32", 20, start=12, store=ResponsibilityStore.open(tmp_path / "f32.zarr", mode="r+"))
    exact = ResponsibilityStore.open(tmp_path / "f32.zarr")
    stale = ResponsibilityStore.open(tmp_path / "f16.zarr", mode="r+")
    assert stale.folded_steps("w") == 12 < stale.steps == 20
    # While the lossy fold is stale, reads sum the whole journal in float32: exactly the exact store's R.
    np.testing.assert_array_equal(stale.read("w"), exact.read("w"))
    stale.fold()
    fresh = ResponsibilityStore.open(tmp_path / "twin.zarr", mode="r+")
    fresh.fold()
    np.testing.assert_array_equal(stale.read("w"), fresh.read("w"))


def test_float16_overflow_is_refused_before_commit(tmp_path):
    w = torch.nn.Parameter(torch.zeros(2))
    spec = RecordingSpec((ParamSpec("w", (2,)),), num_examples=3)
    store = ResponsibilityStore.create(tmp_path / "s.zarr", spec, layout=Layout(r_dtype="float16"))
    rec = Recorder(store, [(spec.params[0], w)], background=False)
    rec.snapshot()
    with torch.no_grad():
        w.add_(1e5)
    rec.record_step([0])
    rec.close()
    with pytest.raises(ValueError, match="float16"):
        store.fold()
    assert store.folded_steps("w") == 0
    assert store.read("w")[0].tolist() == [1e5, 1e5]  # the journal is exact, so lazy reads still are
