"""The opt-in bfloat16 journal against the exact float32 one: every R within 2^-8 of itself, nothing else changed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from responsibility.choices import SIGNS
from responsibility.errors import StoreCorruptError
from responsibility.recording.recorder import Recorder
from responsibility.store import Layout, ResponsibilityStore
from responsibility.store.spec import ParamSpec, RecordingSpec

N = 13
SPECS = (ParamSpec("w", (4, 6)), ParamSpec("u", (5, 3), "neuron"))
BOUND = 2.0**-8  # bfloat16 rounding to nearest even, relative to each journaled value


def record(path, journal_dtype: str, steps: int = 20, batch_share: str = "full", split_at: int | None = None):
    """The same run (Δw over many magnitudes, random batches) into a store; ``split_at``: resume mid-chunk there."""
    spec = RecordingSpec(SPECS, num_examples=N, batch_share=batch_share)
    layout = Layout(chunk_steps=3, topk=4, journal_dtype=journal_dtype)
    store = ResponsibilityStore.create(path, spec, layout=layout)
    params = [torch.nn.Parameter(torch.zeros(s.shape)) for s in SPECS]
    rng = np.random.default_rng(0)
    rec = Recorder(store, list(zip(SPECS, params, strict=True)), background=False)
    for t in range(steps):
        if t == split_at:
            rec.close()
            store = ResponsibilityStore.open(path, mode="r+")
            rec = Recorder(store, list(zip(SPECS, params, strict=True)), background=False)
        rec.snapshot()
        with torch.no_grad():
            for p in params:
                scale = 10.0 ** rng.uniform(-8, 2, tuple(p.shape))
                p.add_(torch.from_numpy((rng.standard_normal(tuple(p.shape)) * scale).astype(np.float32)))
        rec.record_step(rng.choice(N, size=int(rng.integers(1, 6)), replace=False), t, t // 7)
    rec.close()
    return store


@pytest.mark.parametrize("batch_share", ["full", "mean"])
def test_r_is_within_the_stated_bound_of_the_exact_journal(tmp_path, batch_share):
    exact = record(tmp_path / "f32.zarr", "float32", batch_share=batch_share)
    compact = record(tmp_path / "bf16.zarr", "bfloat16", batch_share=batch_share)
    compact.fold(["u"])  # one folded, one read lazily from the journal
    for s in SPECS:
        for sign in SIGNS:
            want, got = exact.read(s.name, sign).astype(np.float64), compact.read(s.name, sign)
            # The bound, plus float32's own rounding of the sums (a few ulps).
            np.testing.assert_array_less(np.abs(got - want), (BOUND + 1e-6) * want + 1e-30)
            assert (got == 0).sum() == (want == 0).sum()  # rounding never turns a change into none
    assert not np.array_equal(exact.read("w"), compact.read("w"))  # it really is lossy


def test_journal_holds_float32_rounded_to_bfloat16(tmp_path):
    exact = record(tmp_path / "f32.zarr", "float32")
    compact = record(tmp_path / "bf16.zarr", "bfloat16")
    rows = exact.journal_rows(0, exact.steps)[0]
    rounded = torch.from_numpy(rows).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(compact.journal_rows(0, compact.steps)[0], rounded)
    meta = json.loads((tmp_path / "bf16.zarr" / "journal" / "rows" / "zarr.json").read_text())
    assert meta["data_type"] == "uint16" and meta["attributes"]["encoding"] == "bfloat16"
    assert exact.membership()[0].tolist() == compact.membership()[0].tolist()


def test_resume_mid_chunk_rewrites_the_same_bits(tmp_path):
    once = record(tmp_path / "once.zarr", "bfloat16")
    resumed = record(tmp_path / "resumed.zarr", "bfloat16", split_at=7)  # 7 = 2 whole chunks of 3 + 1 row
    np.testing.assert_array_equal(once.journal_rows(0, 20)[0], resumed.journal_rows(0, 20)[0])


def test_a_lost_chunk_of_bfloat16_rows_is_detected(tmp_path):
    record(tmp_path / "s.zarr", "bfloat16")
    (tmp_path / "s.zarr" / "journal" / "rows" / "c" / "1" / "0").unlink()
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    with pytest.raises(StoreCorruptError, match="missing"):
        store.read("w")
