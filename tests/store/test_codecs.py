"""Codecs per array: lz4 (the default) writes the journal's float data and per-example R unshuffled at level 1
(speed at every step; shuffling does not shrink them) and everything else byte-shuffled; every codec stores the
same numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr
from zarr.codecs import BloscCodec

from responsibility.recording.recorder import Recorder
from responsibility.store import Layout, ResponsibilityStore
from responsibility.store.layout import ArraySpec, create_array, create_arrays
from responsibility.store.spec import ParamSpec, RecordingSpec

N = 11
SPECS = (ParamSpec("w", (4, 6)), ParamSpec("u", (5, 3), "neuron"))


def record(path, codec: str, journal_dtype: str = "float32") -> ResponsibilityStore:
    """A short run whose Δw has runs of exact zeros over many magnitudes, folded."""
    spec = RecordingSpec(SPECS, num_examples=N)
    layout = Layout(chunk_steps=4, topk=3, codec=codec, journal_dtype=journal_dtype)
    store = ResponsibilityStore.create(path, spec, layout=layout)
    params = [torch.nn.Parameter(torch.zeros(s.shape)) for s in SPECS]
    rng = np.random.default_rng(1)
    rec = Recorder(store, list(zip(SPECS, params, strict=True)), background=False)
    for t in range(10):
        rec.snapshot()
        with torch.no_grad():
            for p in params:
                step = rng.standard_normal(tuple(p.shape)) * 10.0 ** rng.uniform(-6, 1, tuple(p.shape))
                step[rng.random(tuple(p.shape)) < 0.4] = 0.0
                p.add_(torch.from_numpy(step.astype(np.float32)))
        rec.record_step(rng.choice(N, size=int(rng.integers(1, 5)), replace=False), t, 0)
    rec.close()
    store.fold()
    return store


def blosc_settings(path) -> dict[str, tuple[int, str] | None]:
    """Array path -> its Blosc (level, shuffle), None without Blosc."""
    out: dict[str, tuple[int, str] | None] = {}

    def visit(group: zarr.Group) -> None:
        for name, arr in group.arrays():
            blosc = [c for c in arr.compressors if isinstance(c, BloscCodec)]
            key = f"{group.path}/{name}".lstrip("/")
            out[key] = (blosc[0].clevel, str(blosc[0].shuffle.value)) if blosc else None
        for _, sub in group.groups():
            visit(sub)

    visit(zarr.open_group(path, mode="r"))
    return out


@pytest.mark.parametrize("journal_dtype", ["float32", "bfloat16"])
def test_every_codec_stores_the_same_journal_and_r(tmp_path, journal_dtype):
    stores = {c: record(tmp_path / f"{c}.zarr", c, journal_dtype) for c in ("lz4", "zstd", "none")}
    ref = stores["none"]
    for codec, store in stores.items():
        for s in SPECS:
            rows, want = store.param_rows(s.name), ref.param_rows(s.name)
            assert rows.keys() == want.keys()
            for key in rows:
                np.testing.assert_array_equal(rows[key], want[key], err_msg=f"{codec} {s.name} {key}")
            for sign in ("pos", "neg"):
                np.testing.assert_array_equal(store.read(s.name, sign), ref.read(s.name, sign), err_msg=codec)
            np.testing.assert_array_equal(store.topk_index(s.name)[0], ref.topk_index(s.name)[0])


@pytest.mark.parametrize("r_dtype", ["float32", "float16"])
def test_lz4_leaves_only_the_journals_float_data_and_per_example_r_unshuffled(tmp_path, r_dtype):
    record(tmp_path / "lz4.zarr", "lz4")  # uniform attribution: its R is shuffled
    # One parameter recorded per example and one uniformly, in one store with its journal of per-example values.
    spec = RecordingSpec(
        (ParamSpec("d", (3, 2), example_form="dense"), ParamSpec("u", (2, 2))),
        num_examples=N,
        attribution="per_example",
    )
    mixed = ResponsibilityStore.create(tmp_path / "examples.zarr", spec, layout=Layout(r_dtype=r_dtype))
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((1, spec.journal_width)).astype(np.float32)
    examples = rng.standard_normal((3, spec.example_width)).astype(np.float32)
    mixed.write_journal(0, rows, np.array([1, 4, 7]), 0, np.array([[3, 0, 0, 0]]), examples)
    mixed.commit(1, 3)
    mixed.fold()
    found = {**blosc_settings(tmp_path / "lz4.zarr"), **blosc_settings(tmp_path / "examples.zarr")}
    d_r = {p for p in found if p.startswith("fold/d/") and p.rsplit("/", 1)[1] in ("pos", "neg")}
    # float16 R keeps shuffling: it is smaller with it.
    unshuffled = {"journal/rows", "journal/examples", *(d_r if r_dtype == "float32" else ())}
    assert len(d_r) == 2 and unshuffled <= found.keys() and {"journal/ids", "journal/steps"} <= found.keys()
    assert any(p.startswith("fold/u/") and p.endswith("/pos") for p in found)  # uniform R, shuffled
    assert any(p.startswith("fold/d/") and p.endswith("_values") for p in found)  # its top-k index, shuffled
    for path, setting in found.items():
        assert setting == ((1, "noshuffle") if path in unshuffled else (5, "shuffle")), path
    zstd = blosc_settings(record(tmp_path / "zstd.zarr", "zstd").path)
    assert set(zstd.values()) == {(1, "shuffle")}  # the compact choice shuffles everything


def test_arrays_created_at_once_match_arrays_created_one_by_one(tmp_path):
    """create_arrays shares one metadata object among arrays alike: each array's zarr.json must still be what
    create_array writes for it alone, and arrays alike must stay separate arrays."""
    arrays: dict[str, ArraySpec] = {
        "p/pos": ((10, 4), "float32", (5, 2), ("example", "unit")),
        "p/neg": ((10, 4), "float32", (5, 2), ("example", "unit")),
        "p/ids": ((3, 4), "int64", (3, 2), ("rank", "unit")),
        "q/pos": ((10, 6), "float32", (5, 2), ("example", "unit")),
        "j/rows": ((0, 6), "float32", (2, 3), ("step", "column")),
        "j/more": ((0, 6), "float32", (2, 3), ("step", "column")),
    }
    unshuffled, attributes = {"j/rows", "j/more"}, {"j/rows": {"encoding": "float32"}}
    layout = Layout()
    made = create_arrays(zarr.open_group(tmp_path / "once", mode="w"), arrays, layout, unshuffled, attributes)
    each = zarr.open_group(tmp_path / "each", mode="w")
    for name, (shape, dtype, chunks, dims) in arrays.items():
        one = create_array(each, name, shape, dtype, chunks, layout, dims, unshuffled=name in unshuffled)
        if name in attributes:
            one.attrs.put(attributes[name])
    for name in arrays:
        once = json.loads((tmp_path / "once" / name / "zarr.json").read_text())
        alone = json.loads((tmp_path / "each" / name / "zarr.json").read_text())
        assert once == alone, name
    made["p/pos"][:] = 1.0
    made["p/neg"][:] = 2.0
    again = zarr.open_group(tmp_path / "once", mode="r")
    assert np.all(again["p/pos"][:] == 1.0) and np.all(again["p/neg"][:] == 2.0)
    assert again["j/rows"].attrs.asdict() == {"encoding": "float32"} and again["j/more"].attrs.asdict() == {}
