"""The GPU path: recording from CUDA weights (device snapshot and Δw, pinned non-blocking copies) and folding on
the GPU, against the same float64 references as the CPU tests. Skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import IndexedData, NaiveReference, PerExampleReference, TinyNet, make_trainer
from torch.utils.data import DataLoader

from responsibility import ResponsibilityCallback, ResponsibilityStore
from responsibility.kernels import index_add_fold

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

N = 40


def loader() -> DataLoader:
    return DataLoader(IndexedData(N), batch_size=8, shuffle=True)


@pytest.mark.parametrize(
    "granularity",
    [
        {"net.0.weight": "neuron"},
        # Neurons everywhere: units of widths 8, 6 and 1 (both biases, reduced as one block) on the batched path.
        {n: "neuron" for n in ("net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias")},
    ],
    ids=["one layer of neurons", "neurons everywhere"],
)
def test_recording_cuda_weights_matches_reference(tmp_path, granularity):
    ref = NaiveReference(N, granularity)
    cb = ResponsibilityCallback(
        tmp_path / "s.zarr", granularity=granularity, attribution="uniform", journal_buffer_mb=0.01, fold="never"
    )
    torch.manual_seed(0)
    make_trainer(tmp_path, [cb, ref], accelerator="gpu", max_epochs=2).fit(TinyNet(optimizer="momentum"), loader())
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert store.steps == 10
    for name in store.parameters:
        for sign in ("pos", "neg"):
            np.testing.assert_allclose(store.read(name, sign), ref.get(name, sign), rtol=2e-5, atol=1e-8)


def test_per_example_on_cuda_matches_reference(tmp_path):
    ref = PerExampleReference(N, "magnitude")
    cb = ResponsibilityCallback(tmp_path / "s.zarr", attribution="per_example", fold="never")
    torch.manual_seed(0)
    make_trainer(tmp_path, [cb, ref], accelerator="gpu", max_epochs=2).fit(TinyNet(optimizer="adam"), loader())
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    for name in store.parameters:
        want = ref.get(name, "abs")
        np.testing.assert_allclose(store.read(name), want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


def test_per_example_neurons_on_cuda_match_reference(tmp_path):
    """Per-unit shares on the GPU under the "gradient" rule (plain SGD), whose denominators are autograd's weight
    gradients kept on the device by the capture's node hooks."""
    granularity = {n: "neuron" for n in ("net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias")}
    ref = PerExampleReference(N, "gradient", granularity=granularity)
    cb = ResponsibilityCallback(tmp_path / "s.zarr", attribution="per_example", granularity="neuron", fold="never")
    torch.manual_seed(0)
    make_trainer(tmp_path, [cb, ref], accelerator="gpu", max_epochs=2).fit(TinyNet(optimizer="sgd"), loader())
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert store.spec.share_rule == "gradient"
    for name in store.parameters:
        assert store.param(name).example_form == "units"
        for sign in ("pos", "neg"):
            want = ref.get(name, sign)
            np.testing.assert_allclose(store.read(name, sign), want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_derived_journal_on_cuda_matches_reference(tmp_path, granularity):
    """journal_delta="derived" from CUDA weights: the check and the scales on the device, the scales copied
    without blocking; R is the per-example SGD update -lr·g_j/B (summed per unit at neuron granularity)."""
    names = ("net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias")
    units = {n: "neuron" for n in names} if granularity == "neuron" else {}
    ref = PerExampleReference(N, "gradient", sgd_exact_lr=0.1, granularity=units)
    cb = ResponsibilityCallback(
        tmp_path / "s.zarr", attribution="per_example", granularity=granularity, journal_delta="derived", fold="never"
    )
    torch.manual_seed(0)
    make_trainer(tmp_path, [cb, ref], accelerator="gpu", max_epochs=2).fit(TinyNet(optimizer="sgd"), loader())
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    scales = store.journal_scales()
    assert scales is not None and np.isfinite(scales).all()
    for name in store.parameters:
        for sign in ("pos", "neg"):
            want = ref.get(name, sign)
            np.testing.assert_allclose(store.read(name, sign), want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("attribution", ["uniform", "per_example"])
@pytest.mark.parametrize("budget", [1 << 14, None], ids=["small groups", "one group"])
def test_gpu_fold_equals_cpu_fold(tmp_path, attribution, budget):
    cb = ResponsibilityCallback(tmp_path / "s.zarr", attribution=attribution, fold="never")
    make_trainer(tmp_path, [cb], max_epochs=2).fit(TinyNet(), loader())
    store = ResponsibilityStore.open(tmp_path / "s.zarr", mode="r+")
    cpu = {n: store.read(n) for n in store.parameters}  # lazy CPU fold from the journal
    cpu_top = {n: store.most_responsible(n, k=3) for n in store.parameters}
    store.fold(device="cuda", **({} if budget is None else {"budget_bytes": budget}))
    for name, want in cpu.items():
        if attribution == "uniform":
            # Bit for bit: the GPU adds an example's repeats in order too (rounds of distinct ids, not atomics),
            # and ranks the top-k index on the device with the CPU's tie rule.
            np.testing.assert_array_equal(store.read(name).view(np.int32), want.view(np.int32))
            for got, expected in zip(store.most_responsible(name, k=3), cpu_top[name], strict=True):
                np.testing.assert_array_equal(got, expected)
        else:
            # Per-example shares come from GEMMs, whose sums the GPU orders differently: each share differs by a
            # few float32 ulps, and R sums them (seen on an H200: at most 1.5e-6 relative).
            np.testing.assert_allclose(store.read(name), want, rtol=1e-5, atol=0)
        ids, _ = store.most_responsible(name, k=1)
        assert ids.shape == (1, *store.param(name).r_shape)


@pytest.mark.parametrize("width", [7, 300])
def test_fold_kernel_on_cuda_is_bit_identical_to_cpu(width):
    """Three epochs in one group: each example's three rows are added in order on the GPU as on the CPU."""
    g = torch.Generator().manual_seed(width)
    n, batch = 5000, 50
    ids = torch.cat([torch.randperm(n, generator=g) for _ in range(3)])
    steps = len(ids) // batch
    row_of_id = torch.arange(steps).repeat_interleave(batch)
    # Rows over twelve orders of magnitude, so that another order of addition gives other bits.
    rows = torch.rand(steps, width, generator=g) * 10.0 ** torch.randint(-6, 6, (steps, 1), generator=g)
    scale = torch.rand(len(ids), generator=g)
    acc = torch.rand(n, width, generator=g)
    want = acc.clone()
    index_add_fold(want, rows, ids, row_of_id, scale)
    got = acc.cuda()
    index_add_fold(got, rows.cuda(), ids.cuda(), row_of_id.cuda(), scale.cuda())
    assert torch.equal(got.cpu().view(torch.int32), want.view(torch.int32))
