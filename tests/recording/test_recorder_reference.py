"""The store agrees with a naive float64 reference across the training set-ups users have."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from helpers import IndexedData, NaiveReference, TinyNet, make_trainer
from torch.utils.data import DataLoader

from responsibility import ResponsibilityCallback, ResponsibilityStore
from responsibility.recording.device_rows import DeviceRows

N = 48

CASES = {
    "batch1": dict(batch_size=1, max_epochs=1),
    "batch8_shuffle_2ep": dict(batch_size=8, shuffle=True),
    "ragged_last_batch": dict(batch_size=10, shuffle=True),
    "accumulate2": dict(batch_size=8, shuffle=True, accumulate_grad_batches=2),
    "adam": dict(batch_size=8, shuffle=True, optimizer="adam"),
    "adamw_clip_momentum": dict(batch_size=8, shuffle=True, optimizer="adamw", gradient_clip_val=0.05),
    "sgd_momentum_wd": dict(batch_size=8, shuffle=True, optimizer="momentum"),
    "frozen_layer": dict(batch_size=8, shuffle=True, freeze=True, layers=["net"]),
    "neuron": dict(batch_size=8, shuffle=True, granularity="neuron"),
    "mixed_granularity": dict(batch_size=8, shuffle=True, granularity={"*": "neuron", "net.2.weight": "weight"}),
    "mean_share": dict(batch_size=8, shuffle=True, batch_share="mean", accumulate_grad_batches=2),
    "max_steps_mid_epoch": dict(batch_size=8, shuffle=True, max_steps=9, max_epochs=-1),
}


def _granularity_map(model, granularity) -> dict[str, str]:
    from responsibility.recording.selection import resolve_granularity

    return {n: resolve_granularity(n, granularity) for n, _ in model.named_parameters()}


def run_case(
    tmp_path,
    *,
    batch_size,
    shuffle=False,
    optimizer="sgd",
    freeze=False,
    layers=None,
    granularity="weight",
    batch_share="full",
    num_workers=0,
    chunk_mb=None,
    **trainer_kw,
):
    torch.manual_seed(1)
    model = TinyNet(optimizer=optimizer, freeze=freeze)
    ref = NaiveReference(N, _granularity_map(model, granularity), batch_share)
    extra = {} if chunk_mb is None else {"journal_buffer_mb": chunk_mb}
    cb = ResponsibilityCallback(
        tmp_path / "store.zarr",
        layers=layers,
        granularity=granularity,
        batch_share=batch_share,
        attribution="uniform",
        **extra,
    )
    loader = DataLoader(
        IndexedData(N),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
    make_trainer(tmp_path, [cb, ref], **trainer_kw).fit(model, loader)
    return ResponsibilityStore.open(tmp_path / "store.zarr"), ref, model


def assert_matches(store, ref, names=None):
    names = names or store.parameters
    for name in names:
        for sign in ("abs", "pos", "neg"):
            got = store.read(name, sign)
            want = ref.get(name, sign)
            assert got.shape == want.shape, (name, got.shape, want.shape)
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7, err_msg=f"{name} {sign}")


@pytest.mark.parametrize("case", list(CASES))
def test_store_matches_naive_reference(tmp_path, case):
    store, ref, model = run_case(tmp_path, **CASES[case])
    assert store.steps > 0
    assert store.folded_steps(store.parameters[0]) == store.steps  # tiny R: folded at fit end
    assert_matches(store, ref)


@pytest.fixture
def rows_on_cpu(monkeypatch):
    """The GPU path (snapshots in one flat buffer, rows formed by DeviceRows) on the CPU; lists the rows it formed."""
    formed = []

    def applies(params):
        return bool(params) and all(p.dtype == torch.float32 for p in params)

    monkeypatch.setattr(DeviceRows, "applies", staticmethod(applies))
    form = DeviceRows.form

    def counted(self, row):
        formed.append(row)
        form(self, row)

    monkeypatch.setattr(DeviceRows, "form", counted)
    return formed


@pytest.mark.parametrize("case", ["batch8_shuffle_2ep", "accumulate2", "neuron", "mixed_granularity", "frozen_layer"])
def test_rows_formed_on_the_device_path_match_the_reference(tmp_path, rows_on_cpu, case):
    store, ref, _ = run_case(tmp_path, **CASES[case])
    assert_matches(store, ref)
    # A frozen layer is tracked but not in the optimizer: no step snapshots every parameter, so the per-parameter
    # path forms every row.
    assert len(rows_on_cpu) == (0 if case == "frozen_layer" else store.steps)


def test_frozen_layer_records_zero_change(tmp_path):
    store, ref, _ = run_case(tmp_path, **CASES["frozen_layer"])
    assert "net.0.weight" in store.parameters
    assert np.all(store.read("net.0.weight") == 0)
    assert store.read("net.2.weight").sum() > 0


def test_default_layers_skip_frozen_parameters(tmp_path):
    store, _, _ = run_case(tmp_path, batch_size=8, freeze=True, max_epochs=1)
    assert store.parameters == ["net.2.weight", "net.2.bias"]


def test_steps_and_membership_follow_training(tmp_path):
    store, ref, _ = run_case(tmp_path, batch_size=10, shuffle=True, accumulate_grad_batches=2)
    ids, counts = store.membership()
    # 48 examples in batches of 10 (last 8), two micro-batches per step: steps of 20, 20, 8 per epoch
    assert counts.tolist() == [20, 20, 8] * 2
    assert store.layout.chunk_steps == 3  # the callback told the store: an epoch's 3 steps fill one chunk row
    for epoch in range(2):
        assert sorted(ids[epoch * N : (epoch + 1) * N].tolist()) == list(range(N))
    meta = store.meta()
    assert meta[:, 0].tolist() == [1, 2, 3, 4, 5, 6]  # global_step after each step
    assert meta[:, 1].tolist() == [0, 0, 0, 1, 1, 1]


def test_small_journal_chunks_and_worker_processes(tmp_path):
    """Many chunk rows (1 step per chunk... a few) and workers prefetching indices ahead of training."""
    store, ref, _ = run_case(tmp_path, batch_size=4, shuffle=True, num_workers=2, chunk_mb=0.001)
    assert store.layout.chunk_steps == 1
    assert_matches(store, ref)


def test_labels_stored_from_dataset(tmp_path):
    store, _, _ = run_case(tmp_path, batch_size=8, max_epochs=1)
    np.testing.assert_array_equal(store.labels, IndexedData(N).targets.numpy())


class _Scheduled(TinyNet):
    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.5)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.3)}


class _TwoOptimizers(TinyNet):
    """Manual optimization, one optimizer per layer, both stepping in every batch (a GAN-like loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        first, second = self.optimizers()
        loss = torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        first.zero_grad()
        second.zero_grad()
        self.manual_backward(loss)
        first.step()
        if batch_idx % 2 == 0:  # the second optimizer skips every other batch
            second.step()

    def configure_optimizers(self):
        return [torch.optim.SGD(self.net[0].parameters(), lr=0.1), torch.optim.Adam(self.net[2].parameters(), 0.01)]


@pytest.mark.parametrize(
    "model, trainer_kw",
    [
        (_Scheduled, dict(max_epochs=2)),
        (_TwoOptimizers, dict(max_epochs=2)),
        (TinyNet, dict(max_epochs=3, reload_dataloaders_every_n_epochs=1)),
    ],
    ids=["lr_scheduler", "two_optimizers_manual", "reload_dataloaders"],
)
@pytest.mark.parametrize("device_path", [False, True], ids=["parameter_loop", "device_path"])
def test_schedulers_several_optimizers_and_reloaded_loaders(tmp_path, request, model, trainer_kw, device_path):
    formed = request.getfixturevalue("rows_on_cpu") if device_path else None
    torch.manual_seed(1)
    ref = NaiveReference(N)
    cb = ResponsibilityCallback(tmp_path / "store.zarr", attribution="uniform")

    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(IndexedData(N), batch_size=8, shuffle=True)

    make_trainer(tmp_path, [cb, ref], **trainer_kw).fit(model(), datamodule=Data())
    store = ResponsibilityStore.open(tmp_path / "store.zarr")
    assert store.steps == 6 * trainer_kw["max_epochs"]
    assert_matches(store, ref)
    if formed is not None:  # two optimizers: only steps where both stepped snapshot every parameter
        assert len(formed) == (store.steps // 2 if model is _TwoOptimizers else store.steps)
