"""Per-example attribution against a float64 reference built from separately computed per-example gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import IndexedData, PerExampleReference, TinyNet, assert_same_store, fit_resumable, make_trainer
from torch import nn
from torch.utils.data import DataLoader

from responsibility import ResponsibilityCallback, ResponsibilityStore
from responsibility.errors import LayerSelectionError
from responsibility.kernels.shares import example_grads, needed_columns, shares
from responsibility.recording.per_example import ExampleGradients, example_form
from responsibility.store.spec import ParamSpec

N = 24


def loader(batch_size: int = 6, shuffle: bool = True) -> DataLoader:
    return DataLoader(IndexedData(N), batch_size=batch_size, shuffle=shuffle)


def record(tmp_path, model, ref, epochs=2, batch_size=6, **kw):
    cb = ResponsibilityCallback(tmp_path / "s.zarr", attribution="per_example", **kw)
    torch.manual_seed(1)
    make_trainer(tmp_path, [cb, ref], max_epochs=epochs).fit(model, loader(batch_size))
    return ResponsibilityStore.open(tmp_path / "s.zarr")


def assert_matches(store, ref, rtol, atol_frac):
    for name in store.parameters:
        for sign in ("pos", "neg", "abs"):
            want = ref.get(name, sign)
            got = store.read(name, sign)
            np.testing.assert_allclose(
                got, want, rtol=rtol, atol=atol_frac * np.abs(want).max(), err_msg=f"{name} {sign}"
            )


# ---------------------------------------------------------------------------------------------- the split rules
def test_shares_hand_computed():
    delta = torch.tensor([[2.0, 2.0, 4.0]])
    grads = torch.tensor([[1.0, 1.0, 1.0], [3.0, -3.0, -1.0]])
    row, counts = torch.zeros(2, dtype=torch.int64), torch.tensor([2])
    # gradient rule: Δw·g_j/Σg  -> column 0: 2·1/4, 2·3/4; column 1: Σg = -2 -> -1, 3; column 2: Σg = 0 -> even
    np.testing.assert_allclose(shares(delta, grads, row, counts, "gradient"), [[0.5, -1.0, 2.0], [1.5, 3.0, 2.0]])
    # magnitude rule: Δw·|g_j|/Σ|g|
    np.testing.assert_allclose(shares(delta, grads, row, counts, "magnitude"), [[0.5, 0.5, 2.0], [1.5, 1.5, 2.0]])
    # no weight split evenly (the usual step): the same ratios, without the even part
    np.testing.assert_allclose(shares(delta[:, :2], grads[:, :2], row, counts, "gradient"), [[0.5, -1.0], [1.5, 3.0]])


@pytest.mark.parametrize("rule", ["gradient", "magnitude"])
def test_shares_of_each_step_sum_to_delta(rule):
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([3, 1, 4])
    delta = torch.randn(3, 7, generator=g, dtype=torch.float64)
    grads = torch.randn(8, 7, generator=g, dtype=torch.float64)
    grads[:, 2] = 0  # no gradient anywhere: split evenly
    row = torch.repeat_interleave(torch.arange(3), counts)
    out = shares(delta, grads, row, counts, rule)
    total = torch.zeros_like(delta).index_add_(0, row, out)
    np.testing.assert_allclose(total, delta, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out[:3, 2], delta[0, 2] / 3)


# ---------------------------------------------------------------------------------------------- capture
class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 4, kernel_size=3, stride=2, padding=1, groups=2)
        self.same = nn.Conv2d(4, 2, kernel_size=2, padding="same", dilation=1, padding_mode="reflect")
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.same(torch.relu(self.conv(x)))).flatten(1))


def test_captured_example_gradients_equal_autograd_per_example():
    net = ConvNet()
    names = dict(net.named_parameters())
    modules = {"conv": net.conv, "same": net.same, "fc": net.fc}
    specs = []
    for name, p in names.items():
        mod, leaf = name.split(".")
        specs.append(
            (ParamSpec(name, tuple(p.shape), example_form=example_form(modules[mod], leaf, name)), modules[mod], leaf)
        )
    cap = ExampleGradients(specs)
    cap.attach()
    x = torch.randn(5, 2, 8, 8)
    y = torch.randint(0, 3, (5,))
    nn.functional.cross_entropy(net(x), y, reduction="sum").backward()
    rows = cap.take()
    cap.detach()
    offset = 0
    for spec, _, _ in specs:
        width = spec.example_width
        part = rows[:, offset : offset + width]
        offset += width
        values = (
            {"grad": part}
            if spec.example_form == "dense"
            else {"out": part[:, : spec.shape[0]], "in": part[:, spec.shape[0] :]}
        )
        got = example_grads(spec, values, slice(0, spec.numel))
        for j in range(5):
            loss = nn.functional.cross_entropy(net(x[j : j + 1]), y[j : j + 1])
            want = torch.autograd.grad(loss, names[spec.name])[0].reshape(-1)
            np.testing.assert_allclose(got[j], want, rtol=1e-4, atol=1e-6, err_msg=f"{spec.name} example {j}")


def test_outer_factors_give_every_run_and_selection_of_weights():
    """example_grads from journaled factors equals the explicit outer product for every slice and index set."""
    spec = ParamSpec("w", (5, 7), example_form="outer")
    torch.manual_seed(0)
    out, inp = torch.randn(4, 5), torch.randn(4, 7)
    full = (out[:, :, None] * inp[:, None, :]).reshape(4, -1)
    for a in range(35):
        for b in range(a + 1, 36):
            for cols in (slice(a, b), np.arange(a, b), np.arange(a, b)[::2]):
                need = needed_columns(spec, cols)
                got = example_grads(spec, {"out": out[:, need["out"]], "in": inp[:, need["in"]]}, cols)
                want = full[:, cols] if isinstance(cols, slice) else full[:, torch.from_numpy(cols)]
                assert torch.equal(got, want), (a, b, cols)


@pytest.mark.parametrize(
    "conv",
    [
        dict(in_channels=3, out_channels=4, kernel_size=(3, 2), stride=(1, 2), dilation=(2, 1)),
        dict(in_channels=4, out_channels=6, kernel_size=3, stride=3, padding=2, dilation=2, groups=2),
        dict(in_channels=2, out_channels=2, kernel_size=(2, 3), padding=(1, 0), padding_mode="circular", groups=2),
    ],
)
def test_conv_example_gradients_with_dilation_stride_and_groups(conv):
    torch.manual_seed(0)
    layer = nn.Conv2d(**conv)
    spec = ParamSpec("w", tuple(layer.weight.shape), example_form="dense")
    cap = ExampleGradients([(spec, layer, "weight")])
    cap.attach()
    x = torch.randn(4, conv["in_channels"], 9, 11)
    (layer(x) ** 2).sum().backward()
    rows = cap.take()
    for j in range(4):
        want = torch.autograd.grad((layer(x[j : j + 1]) ** 2).sum(), layer.weight)[0].reshape(-1)
        np.testing.assert_allclose(rows[j], want, rtol=1e-4, atol=1e-5, err_msg=f"example {j}")


def test_capture_ignores_forward_passes_without_gradient():
    net = nn.Linear(3, 2)
    spec = ParamSpec("weight", (2, 3), example_form="outer")
    cap = ExampleGradients([(spec, net, "weight")])
    cap.attach()
    with torch.no_grad():
        net(torch.randn(4, 3))
    net(torch.randn(2, 3)).sum().backward()
    assert cap.take().shape == (2, 5)
    assert cap.take().shape == (0, 5)


@pytest.mark.parametrize("bias", [True, False])
def test_weight_grads_are_the_captured_calls_own_gradient(bias):
    """The kept weight gradient is Σ_j δ_j a_jᵀ of every captured call since the last take (two calls here, as
    with gradient accumulation or a layer applied twice), and nothing else the weight's gradient holds (a
    penalty in the loss)."""
    torch.manual_seed(0)
    layer = nn.Linear(7, 5, bias=bias)
    spec = ParamSpec("w", (5, 7))
    cap = ExampleGradients([(spec, layer, "weight")])
    cap.keep_weight_grads({"w"})
    cap.attach()
    x1, x2 = torch.randn(4, 7), torch.randn(3, 7)
    (layer(x1).tanh().sum() + layer.weight.square().sum()).backward()
    (layer(x2) ** 2).sum().backward()
    rows = cap.take()
    delta, a = rows[:, :5].double(), rows[:, 5:].double()
    want = delta.T @ a
    got = cap.weight_grads["w"]
    np.testing.assert_allclose(got.double(), want, rtol=1e-5, atol=1e-6)
    penalty = 2 * layer.weight.detach().double()
    np.testing.assert_allclose(layer.weight.grad.double(), want + penalty, rtol=1e-5, atol=1e-6)
    layer(x1).sum().backward()  # a step whose rows the next take() returns: the sum starts afresh
    cap.take()
    np.testing.assert_allclose(cap.weight_grads["w"], torch.ones(4, 5).T @ x1, rtol=1e-5, atol=1e-6)


def test_weight_grads_only_where_they_cover_every_call_in_float32():
    """No kept gradient for a weight not asked for, under autocast (the product runs on a cast copy of the
    weight, in bfloat16), or when one of the step's calls was not seen by the hook."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    cap = ExampleGradients([(ParamSpec("w", (3, 4)), layer, "weight")])
    cap.attach()
    layer(torch.randn(2, 4)).sum().backward()
    cap.take()
    assert cap.weight_grads == {}  # not asked for
    cap.keep_weight_grads({"w"})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(2, 4))
    out.float().sum().backward()
    cap.take()
    assert cap.weight_grads == {}
    layer(torch.randn(2, 4)).sum().backward()
    cap.keep_weight_grads(set())  # the next call's node gets no hook
    layer(torch.randn(2, 4)).sum().backward()
    assert len(cap.take()) == 4
    assert cap.weight_grads == {}


# ---------------------------------------------------------------------------------------------- end to end
def test_plain_sgd_shares_are_each_examples_own_update(tmp_path):
    """With plain SGD, example j's share is -lr·g_j/B: R is Σ_steps |lr·g_j/B| over the steps containing j."""
    ref = PerExampleReference(N, "gradient", sgd_exact_lr=0.1)
    store = record(tmp_path, TinyNet(optimizer="sgd", lr=0.1), ref)
    assert store.spec.share_rule == "gradient"  # "auto" picked the exact rule for plain SGD
    assert_matches(store, ref, rtol=2e-3, atol_frac=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_other_optimizers_use_the_magnitude_rule(tmp_path, optimizer):
    ref = PerExampleReference(N, "magnitude")
    store = record(tmp_path, TinyNet(optimizer=optimizer), ref)
    assert store.spec.share_rule == "magnitude"
    assert_matches(store, ref, rtol=1e-4, atol_frac=1e-6)


def test_gradient_rule_forced_with_accumulation_and_lazy_reads_equal_fold(tmp_path):
    ref = PerExampleReference(N, "gradient")
    cb = ResponsibilityCallback(tmp_path / "s.zarr", attribution="per_example", share_rule="gradient", fold="never")
    torch.manual_seed(1)
    make_trainer(tmp_path, [cb, ref], max_epochs=2, accumulate_grad_batches=2).fit(TinyNet(optimizer="adam"), loader(4))
    store = ResponsibilityStore.open(tmp_path / "s.zarr", mode="r+")
    assert store.steps == 6 and len(store.membership()[0]) == 2 * N
    lazy = {n: store.read(n, "pos") for n in store.parameters}
    picked = store.read("net.0.weight", "neg", weights=[3, 17, 40])
    run = store.read("net.0.weight", "neg", weights=np.arange(5, 29))  # a consecutive run: read as a slice
    store.fold(budget_bytes=4096)  # many small column blocks and step groups
    for name in store.parameters:
        np.testing.assert_array_equal(store.read(name, "pos"), lazy[name])
    np.testing.assert_array_equal(store.read("net.0.weight", "neg").reshape(N, -1)[:, [3, 17, 40]], picked)
    np.testing.assert_array_equal(store.read("net.0.weight", "neg").reshape(N, -1)[:, 5:29], run)
    assert_matches(store, ref, rtol=1e-3, atol_frac=1e-5)


def test_single_step_responsibility_sums_to_the_weight_change(tmp_path):
    model = TinyNet(optimizer="adam")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cb = ResponsibilityCallback(tmp_path / "s.zarr", attribution="per_example")
    make_trainer(tmp_path, [cb], max_epochs=1, max_steps=1).fit(model, loader(8, shuffle=False))
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    for name, p in model.named_parameters():
        net = (store.read(name, "pos") - store.read(name, "neg")).sum(0, dtype=np.float64)
        np.testing.assert_allclose(net, (p.detach() - before[name]).numpy(), rtol=1e-4, atol=1e-7)
        assert not store.read(name)[8:].any()  # examples outside the one batch got nothing


def test_per_example_rejects_unsupported_settings_at_setup(tmp_path):
    class WithNorm(TinyNet):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(3)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.norm(self.net(batch[0])), batch[1])

    cb = ResponsibilityCallback(tmp_path / "a.zarr", attribution="per_example")
    with pytest.raises(LayerSelectionError, match="LayerNorm"):
        make_trainer(tmp_path, [cb], max_epochs=1).fit(WithNorm(), loader())
    for attribution in ("per_example", "auto"):
        with pytest.raises(ValueError, match="batch_share"):
            ResponsibilityCallback(tmp_path / "c.zarr", attribution=attribution, batch_share="mean")
    with pytest.raises(ValueError, match="share_rule"):
        ResponsibilityCallback(tmp_path / "c.zarr", attribution="per_example", share_rule="sign")
    assert not (tmp_path / "a.zarr").exists()


def test_resume_mid_chunk_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    opts = dict(attribution="per_example", journal_buffer_mb=0.006)
    fit_resumable(tmp_path / "a", tmp_path / "a.zarr", 2, **opts)
    fit_resumable(tmp_path / "b", tmp_path / "b.zarr", 1, **opts)
    fit_resumable(tmp_path / "b", tmp_path / "b.zarr", 2, ckpt_path=tmp_path / "b" / "ckpt" / "last.ckpt", **opts)
    a, b = ResponsibilityStore.open(tmp_path / "a.zarr"), ResponsibilityStore.open(tmp_path / "b.zarr")
    assert b.steps == 20 and 10 % b.layout.chunk_steps != 0  # the resume reloaded a partly written chunk row
    np.testing.assert_array_equal(a.journal_examples(0, a.steps), b.journal_examples(0, b.steps))
    assert_same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")
