"""Drop-in id capture, ids from the batch, and clear errors at setup or on the first batch."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from helpers import IndexedData, NaiveReference, TinyNet, make_trainer, tensor_data
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, IterableDataset

from responsibility import (
    ExampleIdError,
    LayerSelectionError,
    ResponsibilityCallback,
    ResponsibilityStore,
    StoreExistsError,
    StoreMismatchError,
    UnsupportedStrategyError,
)

N = 48


class IdsFromContent(Callback):
    """Recovers each batch's example ids by matching input rows to the dataset (rows are distinct)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.seen: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        match = (batch[0][:, None, :] == self.x[None]).all(-1)
        self.seen.append(match.int().argmax(1).tolist())


@pytest.mark.parametrize("num_workers", [0, 2])
def test_drop_in_tensor_dataset_unchanged_module(tmp_path, num_workers):
    data = tensor_data(N)
    truth = IdsFromContent(data.tensors[0])
    cb = ResponsibilityCallback(tmp_path / "s.zarr")
    loader = DataLoader(
        data,
        batch_size=7,
        shuffle=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers else None,
    )
    make_trainer(tmp_path, [cb, truth], max_epochs=2, limit_train_batches=5).fit(TinyNet(), loader)
    s = ResponsibilityStore.open(tmp_path / "s.zarr")
    ids, counts = s.membership()
    assert counts.tolist() == [7] * 10  # limit_train_batches ends epochs early; prefetched batches dropped
    assert ids.tolist() == [i for batch in truth.seen for i in batch]
    np.testing.assert_array_equal(s.labels, data.tensors[1].numpy())


class Streamed(IterableDataset):
    def __init__(self, ids_first: bool = False) -> None:
        self.data = IndexedData(N)

    def __iter__(self):
        for i in range(N):
            yield {"x": self.data.x[i], "y": self.data.targets[i], "idx": i}


class DictNet(TinyNet):
    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.net(batch["x"]), batch["y"])


class DictReference(NaiveReference):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        super().on_train_batch_start(trainer, pl_module, (None, None, batch["idx"]), batch_idx)


def test_iterable_dataset_with_ids_key_matches_reference(tmp_path):
    ref = DictReference(N)
    cb = ResponsibilityCallback(tmp_path / "s.zarr", ids_key="idx", num_examples=N, attribution="uniform")
    make_trainer(tmp_path, [cb, ref], max_epochs=2).fit(DictNet(), DataLoader(Streamed(), batch_size=8))
    s = ResponsibilityStore.open(tmp_path / "s.zarr")
    for name in s.parameters:
        np.testing.assert_allclose(s.read(name), ref.get(name, "abs"), rtol=2e-5, atol=1e-8)


def test_ids_key_callable(tmp_path):
    cb = ResponsibilityCallback(tmp_path / "s.zarr", ids_key=lambda b: b[2])
    make_trainer(tmp_path, [cb], max_epochs=1).fit(TinyNet(), DataLoader(IndexedData(N), batch_size=8))
    assert ResponsibilityStore.open(tmp_path / "s.zarr").membership()[0].tolist() == list(range(N))


def test_iterable_dataset_without_ids_key_is_a_clear_error(tmp_path):
    cb = ResponsibilityCallback(tmp_path / "s.zarr")
    with pytest.raises(ExampleIdError, match="ids_key"):
        make_trainer(tmp_path, [cb], max_epochs=1).fit(DictNet(), DataLoader(Streamed(), batch_size=8))


class ShiftedIds(IndexedData):
    def __getitem__(self, i):
        x, y, idx = super().__getitem__(i)
        return x, y, idx + 100


@pytest.mark.parametrize(
    "key, data, error",
    [
        (2, ShiftedIds(N), "outside \\[0, 48\\)"),
        (0, IndexedData(N), "must be integers"),
        (5, IndexedData(N), "out of range"),
    ],
)
def test_bad_ids_fail_on_first_batch(tmp_path, key, data, error):
    steps = []

    class Count(Callback):
        def on_train_batch_end(self, *args):
            steps.append(1)

    cb = ResponsibilityCallback(tmp_path / "s.zarr", ids_key=key)
    with pytest.raises(ExampleIdError, match=error):
        make_trainer(tmp_path, [cb, Count()], max_epochs=1).fit(TinyNet(), DataLoader(data, batch_size=8))
    assert steps == []


def test_unknown_layer_fails_at_setup(tmp_path):
    cb = ResponsibilityCallback(tmp_path / "s.zarr", layers=["net.0", "classifier*"])
    with pytest.raises(LayerSelectionError, match="classifier"):
        make_trainer(tmp_path, [cb], max_epochs=1).fit(TinyNet(), DataLoader(IndexedData(N), batch_size=8))
    assert not (tmp_path / "s.zarr").exists()


def test_layer_globs_and_granularity_mapping_select_as_documented(tmp_path):
    cb = ResponsibilityCallback(
        tmp_path / "s.zarr", layers=["net.2", "net.0.b*"], granularity={"*": "neuron", "net.2.weight": "weight"}
    )
    make_trainer(tmp_path, [cb], max_epochs=1).fit(TinyNet(), DataLoader(IndexedData(N), batch_size=8))
    s = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert s.parameters == ["net.0.bias", "net.2.weight", "net.2.bias"]
    assert [s.param(n).granularity for n in s.parameters] == ["neuron", "weight", "neuron"]
    assert s.read("net.2.weight").shape == (N, 3, 6)
    assert s.read("net.2.bias").shape == (N, 3)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(granularity="neurons"), LayerSelectionError),
        (dict(granularity={"fc": "unit"}), LayerSelectionError),
        (dict(batch_share="sum"), ValueError),
        (dict(fold="sometimes"), ValueError),
        (dict(codec="gzip9"), ValueError),
        (dict(topk=-1), ValueError),
        (dict(topk_signs=["both"]), ValueError),
        (dict(topk_signs=[]), ValueError),
        (dict(topk_signs=["abs", "abs"]), ValueError),
        (dict(num_examples=0), ValueError),
        (dict(on_error="ignore"), ValueError),
    ],
)
def test_bad_settings_fail_at_construction(tmp_path, kwargs, error):
    with pytest.raises(error):
        ResponsibilityCallback(tmp_path / "s.zarr", **kwargs)


@pytest.mark.parametrize(
    "where, message", [("", "invalid store location"), ("nosuchfs://b/s.zarr", "protocol"), ("{file}", "existing file")]
)
def test_bad_store_location_fails_at_construction(tmp_path, where, message):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match=message):
        ResponsibilityCallback(where.format(file=tmp_path / "f.txt"))


def _fit(tmp_path, model=None, **kw):
    cb = ResponsibilityCallback(tmp_path / "s.zarr", **kw)
    make_trainer(tmp_path, [cb], max_epochs=1).fit(model or TinyNet(), DataLoader(IndexedData(N), batch_size=8))


def test_topk_signs_reach_the_store_as_given_in_a_list(tmp_path):
    """As Hydra passes it (a list): the store's fold indexes just those signs; the rest are read from R."""
    _fit(tmp_path, topk_signs=["neg"], fold="always")
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert store.layout.topk_signs == ("neg",)
    assert store.topk_index("net.0.weight", "neg") is not None and store.topk_index("net.0.weight", "abs") is None
    r = store.read("net.0.weight", "abs").reshape(N, -1)
    ids, vals = store.most_responsible("net.0.weight", 2, "abs")
    np.testing.assert_array_equal(vals.reshape(2, -1), -np.sort(-r, axis=0)[:2])


def test_fresh_run_into_recorded_store_is_refused_unless_overwrite(tmp_path):
    _fit(tmp_path)
    before = ResponsibilityStore.open(tmp_path / "s.zarr").read("net.0.weight")
    with pytest.raises(StoreExistsError, match="already holds 6 recorded steps"):
        _fit(tmp_path)
    np.testing.assert_array_equal(ResponsibilityStore.open(tmp_path / "s.zarr").read("net.0.weight"), before)
    _fit(tmp_path, overwrite=True)
    assert ResponsibilityStore.open(tmp_path / "s.zarr").steps == 6


def test_other_model_or_settings_into_a_store_is_a_mismatch(tmp_path):
    _fit(tmp_path)
    with pytest.raises(StoreMismatchError, match="net.0.weight.*shape"):
        _fit(tmp_path, model=TinyNet(hidden=5))
    with pytest.raises(StoreMismatchError, match="batch_share"):
        _fit(tmp_path, batch_share="mean", attribution="uniform")
    with pytest.raises(StoreMismatchError, match="granularity"):
        _fit(tmp_path, granularity="neuron")
    assert ResponsibilityStore.open(tmp_path / "s.zarr").steps == 6


def test_unsupported_strategy_fails_at_setup(tmp_path):
    from lightning.pytorch.strategies import FSDPStrategy

    cb = ResponsibilityCallback(tmp_path / "s.zarr")
    with pytest.raises(UnsupportedStrategyError, match="FSDP"):
        cb.setup(type("T", (), {"strategy": object.__new__(FSDPStrategy)})(), TinyNet(), "fit")


def test_callback_pickles_before_fit(tmp_path):
    cb = ResponsibilityCallback(tmp_path / "s.zarr", layers=["net.0"])
    clone = pickle.loads(pickle.dumps(cb))
    assert clone.store_path == cb.store_path and clone.layers == ["net.0"]


def test_bf16_mixed_precision_matches_reference(tmp_path):
    ref = NaiveReference(N)
    cb = ResponsibilityCallback(tmp_path / "s.zarr", attribution="uniform")
    make_trainer(tmp_path, [cb, ref], max_epochs=1, precision="bf16-mixed").fit(
        TinyNet(), DataLoader(IndexedData(N), batch_size=8, shuffle=True)
    )
    s = ResponsibilityStore.open(tmp_path / "s.zarr")
    for name in s.parameters:
        np.testing.assert_allclose(s.read(name), ref.get(name, "abs"), rtol=2e-5, atol=1e-8)


def test_nonfinite_step_is_flagged_and_adds_nothing(tmp_path):
    """A transient NaN update (the weight is repaired afterwards) is zeroed and flagged, not summed into R."""

    class NaNOnce(TinyNet):
        def on_before_optimizer_step(self, optimizer):
            if self.trainer.global_step == 2:
                self.saved = self.net[2].weight.detach().clone()
                self.net[2].weight.grad[0, 0] = float("nan")

    class Repair(Callback):  # runs after the responsibility callback has journaled the NaN step
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 3:
                with torch.no_grad():
                    pl_module.net[2].weight.copy_(pl_module.saved)

    cb = ResponsibilityCallback(tmp_path / "s.zarr")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        make_trainer(tmp_path, [cb, Repair()], max_epochs=1).fit(NaNOnce(), DataLoader(IndexedData(N), batch_size=8))
    s = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert s.meta()[:, 2].tolist() == [0, 0, 1, 0, 0, 0]
    delta = s.param_rows("net.2.weight")["delta"]
    assert np.all(delta[2] == 0) and np.all(np.abs(delta[[0, 1, 3, 4, 5]]).sum(1) > 0)
    r = s.read("net.2.weight")
    assert np.isfinite(r).all() and r.sum() > 0


def test_fsspec_url_store(tmp_path):
    """A store at an fsspec URL (in-memory filesystem here) records, folds and reads like a local one."""
    ref = NaiveReference(N)
    url = f"memory://{tmp_path.name}/s.zarr"
    cb = ResponsibilityCallback(url, attribution="uniform")
    make_trainer(tmp_path, [cb, ref], max_epochs=1).fit(TinyNet(), DataLoader(IndexedData(N), batch_size=8))
    s = ResponsibilityStore.open(url)
    assert s.folded_steps("net.2.weight") == s.steps == 6
    np.testing.assert_allclose(s.read("net.2.weight"), ref.get("net.2.weight", "abs"), rtol=2e-5, atol=1e-8)


class _FullMemoryFS(__import__("fsspec.implementations.memory", fromlist=["MemoryFileSystem"]).MemoryFileSystem):
    """An in-memory filesystem that fails like a full disk once ``room`` journal chunks have been written."""

    protocol = "fullmem"
    store: dict = {}  # separate from the memory:// filesystem
    pseudo_dirs = [""]
    room = 1 << 30
    readonly = False

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        if type(self).readonly:
            raise OSError(30, "Read-only file system")
        if "journal/rows/c" in str(path):
            if type(self).room <= 0:
                raise OSError(28, "No space left on device")
            type(self).room -= 1
        return super().pipe_file(path, value, mode=mode, **kwargs)


@pytest.fixture
def full_disk():
    import fsspec

    fsspec.register_implementation("fullmem", _FullMemoryFS, clobber=True)
    _FullMemoryFS.store.clear()
    _FullMemoryFS.room = 1 << 30
    _FullMemoryFS.readonly = False
    yield _FullMemoryFS


def _fit_full(tmp_path, url, **kw):
    cb = ResponsibilityCallback(url, journal_buffer_mb=0.002, **kw)
    steps = []

    class Count(Callback):
        def on_train_batch_end(self, *args):
            steps.append(1)

    make_trainer(tmp_path, [cb, Count()], max_epochs=2).fit(TinyNet(), DataLoader(IndexedData(N), batch_size=8))
    return steps, cb


def test_full_disk_raises_clearly_and_keeps_the_last_commit(tmp_path, full_disk):
    from responsibility import StoreWriteError

    full_disk.room = 2  # two chunk rows fit, the third write fails
    with pytest.raises(StoreWriteError, match="No space left"):
        _fit_full(tmp_path, "fullmem://a/s.zarr")
    s = ResponsibilityStore.open("fullmem://a/s.zarr")
    assert s.steps == 2 * s.layout.chunk_steps < 12
    assert s.membership()[1].tolist() == [8] * s.steps
    assert s.membership()[0].tolist() == list(range(8 * s.steps))
    assert np.isfinite(s.read("net.2.weight")).all()


def test_full_disk_with_on_error_warn_keeps_training(tmp_path, full_disk):
    full_disk.room = 2
    with pytest.warns(RuntimeWarning, match="WITHOUT recording"):
        steps, cb = _fit_full(tmp_path, "fullmem://b/s.zarr", on_error="warn")
    assert len(steps) == 12  # training finished
    s = ResponsibilityStore.open("fullmem://b/s.zarr")
    assert s.steps == 2 * s.layout.chunk_steps < 12
    assert cb.state_dict()["stopped_at"] == 2 * s.layout.chunk_steps


@pytest.mark.parametrize("on_error", ["raise", "warn"])
def test_read_only_location(tmp_path, full_disk, on_error):
    from responsibility import StoreWriteError

    full_disk.readonly = True
    if on_error == "raise":
        with pytest.raises(StoreWriteError, match="Read-only file system"):
            _fit_full(tmp_path, "fullmem://ro/s.zarr")
    else:
        with pytest.warns(RuntimeWarning, match="WITHOUT recording"):
            steps, _ = _fit_full(tmp_path, "fullmem://ro/s.zarr", on_error="warn")
        assert len(steps) == 12


class _Scale(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(6))

    def forward(self, x):
        return x * self.w.reshape(-1)  # still works if w's data is reshaped to (2, 3)


class _ScaledNet(TinyNet):
    def __init__(self, change: str) -> None:
        super().__init__()
        self.net.insert(1, _Scale())
        self.change = change

    def on_train_batch_start(self, batch, batch_idx):
        if batch_idx == 2:
            w = self.net[1].w
            if self.change == "replace":
                self.net[1].w = torch.nn.Parameter(w.detach().clone())
            else:
                w.data = w.data.reshape(2, 3)


@pytest.mark.parametrize("change", ["replace", "reshape"])
def test_parameter_replaced_or_reshaped_during_training(tmp_path, change):
    from responsibility import ParameterChangedError

    cb = ResponsibilityCallback(tmp_path / "s.zarr", journal_buffer_mb=0.0001)
    with pytest.raises(ParameterChangedError, match="'net.1.w' (changed shape|was replaced)"):
        make_trainer(tmp_path, [cb], max_epochs=1).fit(_ScaledNet(change), DataLoader(IndexedData(N), batch_size=8))
    s = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert s.steps == 2  # what was recorded before the change is committed and intact
    assert np.isfinite(s.read("net.0.weight")).all()


def test_dataset_size_change_between_runs_is_a_mismatch(tmp_path):
    _fit(tmp_path)
    cb = ResponsibilityCallback(tmp_path / "s.zarr")
    with pytest.raises(StoreMismatchError, match="num_examples: store has 48, run has 40"):
        make_trainer(tmp_path, [cb], max_epochs=1).fit(TinyNet(), DataLoader(IndexedData(40), batch_size=8))


def test_overwrite_never_deletes_foreign_data(tmp_path):
    from responsibility.store.spec import ParamSpec, RecordingSpec

    spec = RecordingSpec((ParamSpec("w", (2, 2)),), num_examples=4)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreExistsError, match="not a responsibility store"):
        ResponsibilityStore.create(tmp_path / "mine", spec, overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    ResponsibilityStore.create(tmp_path / "store", spec)
    ResponsibilityStore.create(tmp_path / "store", spec, overwrite=True)  # a responsibility store may be replaced


def test_changed_labels_are_a_mismatch(tmp_path):
    _fit(tmp_path)
    relabelled = IndexedData(N)
    relabelled.targets = (relabelled.targets + 1) % 3
    cb = ResponsibilityCallback(tmp_path / "s.zarr")
    with pytest.raises(StoreMismatchError, match="labels differ"):
        make_trainer(tmp_path, [cb], max_epochs=1).fit(TinyNet(), DataLoader(relabelled, batch_size=8))


class NamedData(IndexedData):
    """Names its classes as torchvision's datasets do (``classes``)."""

    def __init__(self, classes: list[str]) -> None:
        super().__init__(N)
        self.classes = classes


def _fit_named(tmp_path, data, **kw) -> ResponsibilityStore:
    cb = ResponsibilityCallback(tmp_path / "s.zarr", **kw)
    make_trainer(tmp_path, [cb], max_epochs=1).fit(TinyNet(), DataLoader(data, batch_size=8))
    return ResponsibilityStore.open(tmp_path / "s.zarr")


def test_class_names_come_from_the_dataset_or_the_argument(tmp_path):
    store = _fit_named(tmp_path / "a", NamedData(["cat", "dog", "eel"]))
    assert store.class_names == ["cat", "dog", "eel"] and store.class_name(2) == "eel"
    assert store.summary()["class_names"] == ["cat", "dog", "eel"]
    # The argument wins over the dataset's names.
    store = _fit_named(tmp_path / "b", NamedData(["cat", "dog", "eel"]), class_names=["x", "y", "z"])
    assert store.class_names == ["x", "y", "z"]
    # Names that do not cover the labels (0..2) describe some other labelling: none are stored.
    store = _fit_named(tmp_path / "c", NamedData(["cat", "dog"]))
    assert store.class_names is None and store.labels is not None
    assert _fit_named(tmp_path / "d", IndexedData(N)).class_names is None


@pytest.mark.parametrize(
    ("names", "message"),
    [(["cat", "dog"], "2 class names do not cover the labels"), (["cat", 3, "eel"], "sequence of strings")],
)
def test_bad_class_names_fail_before_training_without_a_store(tmp_path, names, message):
    with pytest.raises(ValueError, match=message):
        _fit_named(tmp_path, IndexedData(N), class_names=names)
    assert not (tmp_path / "s.zarr").exists()
