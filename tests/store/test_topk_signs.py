"""Which signs of R the top-k index ranks (``Layout.topk_signs``): checked when given, kept with the store, and
stores of format 2 and older, which index all three signs, still served from their index.

Weight changes are multiples of 1/4, so sums are exact; the expectation is a float64 fold of the journal by plain
loops and a stable descending sort (larger value first, then smaller id)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from helpers import naive_r

from responsibility.choices import SIGNS
from responsibility.recording.recorder import Recorder
from responsibility.store import Layout, ResponsibilityStore
from responsibility.store._format import metadata_digest
from responsibility.store.location import ATTR_KEY
from responsibility.store.spec import ParamSpec, RecordingSpec

N = 8
SHAPE = (2, 5)


def record(path, steps: int, signs, seed: int = 0) -> ResponsibilityStore:
    spec = RecordingSpec((ParamSpec("w", SHAPE),), num_examples=N)
    store = ResponsibilityStore.create(path, spec, layout=Layout(chunk_steps=2, topk=3, topk_signs=signs))
    return more(store, steps, seed)


def more(store: ResponsibilityStore, steps: int, seed: int) -> ResponsibilityStore:
    w = torch.nn.Parameter(torch.zeros(SHAPE))
    rec = Recorder(store, [(store.param("w"), w)], background=False)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rec.snapshot()
        with torch.no_grad():
            w.add_(torch.from_numpy(rng.integers(-3, 4, SHAPE).astype(np.float32) / 4))
        rec.record_step(rng.choice(N, size=3, replace=False))
    rec.close()
    return store


def expected_top(store: ResponsibilityStore, sign: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    r = naive_r(store, "w", sign)
    order = np.argsort(-r, axis=0, kind="stable")[:k]
    return order, np.take_along_axis(r, order, axis=0).astype(np.float32)


def test_signs_are_checked_and_kept_in_one_order():
    assert Layout().topk_signs == ("abs",)
    assert Layout(topk_signs=["neg", "abs"]) == Layout(topk_signs=("abs", "neg"))
    assert Layout(topk_signs=["neg", "abs"]).topk_signs == ("abs", "neg")
    assert Layout(topk_signs="pos").topk_signs == ("pos",)  # type: ignore[arg-type]  # one sign, as Hydra may pass
    for bad in (["both"], ["abs", "both"], [], ["pos", "pos"]):
        with pytest.raises(ValueError, match="topk_signs"):
            Layout(topk_signs=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("signs", [("abs",), ("pos", "neg"), SIGNS])
def test_a_fold_indexes_the_stores_signs_and_serves_the_rest_from_r(tmp_path, signs):
    record(tmp_path / "s.zarr", steps=7, signs=signs).fold()
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert store.layout.topk_signs == signs
    arrays = set(zarr.open_group(tmp_path / "s.zarr")[store.fold_group("w")].array_keys())
    assert {a for a in arrays if a.startswith("top_")} == {f"top_{s}_{k}" for s in signs for k in ("ids", "values")}
    for sign in SIGNS:
        index = store.topk_index("w", sign)
        assert (index is not None) == (sign in signs)
        want_ids, want_vals = expected_top(store, sign, 3)
        if index is not None:
            np.testing.assert_array_equal(index[0], want_ids)
            np.testing.assert_array_equal(index[1], want_vals)
        ids, vals = store.most_responsible("w", 3, sign)
        np.testing.assert_array_equal(ids.reshape(3, -1), want_ids)
        np.testing.assert_array_equal(vals.reshape(3, -1), want_vals)


def as_format_2(path) -> None:
    """Rewrite a store's metadata as the library wrote it before format 3: no ``topk_signs`` in its layout."""
    group = zarr.open_group(path, mode="r+")
    meta = dict(group.attrs[ATTR_KEY])
    meta["format"] = 2
    meta["layout"] = {k: v for k, v in meta["layout"].items() if k != "topk_signs"}
    meta["digest"] = metadata_digest(meta)
    group.attrs[ATTR_KEY] = meta


def test_a_format_2_store_keeps_its_index_of_all_three_signs(tmp_path):
    record(tmp_path / "s.zarr", steps=5, signs=SIGNS).fold()
    as_format_2(tmp_path / "s.zarr")
    store = ResponsibilityStore.open(tmp_path / "s.zarr", mode="r+")
    assert store.layout.topk_signs == SIGNS
    for sign in SIGNS:
        index = store.topk_index("w", sign)
        assert index is not None
        np.testing.assert_array_equal(index[0], expected_top(store, sign, 3)[0])
    more(store, 3, seed=1).fold()  # a later fold of the old store indexes what its readers expect: all three
    for sign in SIGNS:
        index = store.topk_index("w", sign)
        assert index is not None
        np.testing.assert_array_equal(index[1], expected_top(store, sign, 3)[1])
