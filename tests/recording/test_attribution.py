"""Per-example attribution at neuron granularity and with sequence inputs, and attribution="auto" (the default):
per example where it applies, uniform elsewhere with one warning; each against float64 references."""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pytest
import torch
from helpers import IndexedData, NaiveReference, PerExampleReference, TinyNet, make_trainer
from torch import nn
from torch.utils.data import DataLoader, Dataset

from responsibility import LayerSelectionError, ResponsibilityCallback, ResponsibilityError, ResponsibilityStore
from responsibility.recording.per_example import ExampleGradients

N = 24


class Classifier(L.LightningModule):
    """Cross-entropy classifier around ``net`` (what PerExampleReference recomputes), SGD or Adam."""

    def __init__(self, net: nn.Module, optimizer: str = "sgd") -> None:
        super().__init__()
        self.net, self.optimizer = net, optimizer

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        if self.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=0.01)
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Shaped(Dataset):
    """(x, y, id) with inputs of any shape."""

    def __init__(self, *shape: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(N, *shape, generator=g)
        self.targets = torch.randint(0, 3, (N,), generator=g)

    def __len__(self) -> int:
        return N

    def __getitem__(self, i):
        return self.x[i], self.targets[i], torch.tensor(i)


class SeqNet(nn.Module):
    """A Linear over the positions of (batch, positions, features) inputs, pooled, then a classifier."""

    def __init__(self, norm: bool = False, hidden: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(5, hidden)
        self.norm = nn.LayerNorm(hidden) if norm else nn.Identity()
        self.out = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.out(self.norm(torch.relu(self.inp(x))).mean(1))


class ConvNet(nn.Module):
    def __init__(self, batch_norm: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 4, kernel_size=3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4) if batch_norm else nn.Identity()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def fit(tmp_path, module, data, callbacks, epochs=2, batch_size=6, **cb_kw):
    cb = ResponsibilityCallback(tmp_path / "s.zarr", **cb_kw)
    torch.manual_seed(1)
    make_trainer(tmp_path, [cb, *callbacks], max_epochs=epochs).fit(
        module, DataLoader(data, batch_size=batch_size, shuffle=True)
    )
    return ResponsibilityStore.open(tmp_path / "s.zarr")


def assert_matches(store, ref, names, rtol=1e-4, atol_frac=1e-6):
    for name in names:
        for sign in ("pos", "neg"):
            want, got = ref.get(name, sign), store.read(name, sign)
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol_frac * np.abs(want).max(), err_msg=name)


def granularity_of(module, granularity) -> dict[str, str]:
    from responsibility.recording.selection import resolve_granularity

    return {n: resolve_granularity(n, granularity) for n, _ in module.named_parameters()}


def responsibility_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "attribution='auto'" in str(w.message)]


# ------------------------------------------------------------------------------------------------ neuron granularity
@pytest.mark.parametrize("optimizer, rule", [("sgd", "gradient"), ("adam", "magnitude")])
def test_neuron_granularity_per_example_matches_reference(tmp_path, optimizer, rule):
    granularity = {"*": "neuron", "net.2.weight": "weight"}
    model = TinyNet(optimizer=optimizer)
    ref = PerExampleReference(N, rule, granularity=granularity_of(model, granularity))
    store = fit(
        tmp_path, model, IndexedData(N), [ref], attribution="per_example", granularity=granularity, fold="never"
    )
    assert [store.param(n).example_form for n in store.parameters] == ["units", "units", "outer", "units"]
    assert store.read("net.0.weight").shape == (N, 6)
    assert_matches(store, ref, store.parameters)  # read lazily from the journal
    store = ResponsibilityStore.open(tmp_path / "s.zarr", mode="r+")
    lazy = {n: store.read(n, "neg") for n in store.parameters}
    store.fold(budget_bytes=2048)
    for name in store.parameters:
        np.testing.assert_array_equal(store.read(name, "neg"), lazy[name])


def test_neuron_plain_sgd_unit_shares_are_each_examples_own_update(tmp_path):
    ref = PerExampleReference(N, "gradient", sgd_exact_lr=0.1, granularity=granularity_of(TinyNet(), {"*": "neuron"}))
    store = fit(tmp_path, TinyNet(), IndexedData(N), [ref], attribution="per_example", granularity="neuron")
    assert_matches(store, ref, store.parameters, rtol=2e-3, atol_frac=1e-5)


class PenalizedNet(TinyNet):
    """TinyNet whose loss adds an L2 penalty on the first layer's weights: a part of their gradient, and of Δw,
    that comes from no example."""

    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx) + 0.05 * self.net[0].weight.square().sum()


@pytest.mark.parametrize("accumulate", [1, 2])
def test_neuron_shares_divide_by_the_examples_gradients_not_the_weights_gradient(tmp_path, accumulate):
    """The "gradient" rule divides by Σ_k g_k of the examples' own gradients. The recorder takes that sum from
    autograd's product for the tracked layer's calls (one per micro-batch), which the penalty's part of the
    weight's gradient does not enter; the float64 reference forms it from the examples."""
    model = PenalizedNet()
    ref = PerExampleReference(N, "gradient", granularity=granularity_of(model, "neuron"))
    cb = ResponsibilityCallback(
        tmp_path / "s.zarr", attribution="per_example", granularity="neuron", share_rule="gradient", fold="never"
    )
    torch.manual_seed(1)
    trainer = make_trainer(tmp_path, [cb, ref], max_epochs=2, accumulate_grad_batches=accumulate)
    trainer.fit(model, DataLoader(IndexedData(N), batch_size=6, shuffle=True))
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert store.param("net.0.weight").example_form == "units"
    assert_matches(store, ref, store.parameters)


@pytest.mark.parametrize("optimizer, kept", [("sgd", True), ("adam", False)])
def test_weight_gradients_are_kept_for_the_gradient_rule_only(tmp_path, monkeypatch, optimizer, kept):
    """Autograd's weight gradients stand in for the "gradient" rule's denominator (plain SGD's rule); under
    "magnitude" (Adam's) nothing would use them, so no hook copies them."""
    seen: list[str] = []
    original = ExampleGradients._weight_grad

    def spy(self, name, *args):
        seen.append(name)
        return original(self, name, *args)

    monkeypatch.setattr(ExampleGradients, "_weight_grad", spy)
    store = fit(
        tmp_path, TinyNet(optimizer=optimizer), IndexedData(N), [], attribution="per_example", granularity="neuron"
    )
    assert store.spec.share_rule == ("gradient" if kept else "magnitude")
    assert sorted(set(seen)) == (["net.0.weight", "net.2.weight"] if kept else [])


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_conv_layers_per_example_match_reference(tmp_path, granularity):
    module = Classifier(ConvNet(), "adam")
    ref = PerExampleReference(N, "magnitude", granularity=granularity_of(module, granularity))
    store = fit(tmp_path, module, Shaped(2, 8, 8), [ref], attribution="per_example", granularity=granularity)
    assert_matches(store, ref, store.parameters)


# ------------------------------------------------------------------------------------------------ sequence inputs
@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_linear_with_sequence_inputs_per_example_matches_reference(tmp_path, granularity):
    """A Linear over (batch, positions, features): the example's gradient is the sum over its positions."""
    module = Classifier(SeqNet())
    ref = PerExampleReference(N, "gradient", granularity=granularity_of(module, granularity))
    store = fit(tmp_path, module, Shaped(4, 5), [ref], attribution="per_example", granularity=granularity)
    forms = {"weight": "dense", "neuron": "units"}[granularity]
    assert store.param("net.inp.weight").example_form == forms
    assert_matches(store, ref, store.parameters)


def test_batch_not_first_is_a_clear_error(tmp_path):
    class SeqFirst(SeqNet):
        def forward(self, x):  # (positions, batch, features) inside, as with batch_first=False
            return self.out(torch.relu(self.inp(x.transpose(0, 1))).mean(0))

    with pytest.raises(ResponsibilityError, match="batch in its input's first dimension"):
        fit(tmp_path, Classifier(SeqFirst()), Shaped(4, 5), [], attribution="per_example")


# ------------------------------------------------------------------------------------------------ auto
def test_auto_records_per_example_where_it_applies_and_warns_once_about_the_rest(tmp_path):
    module = Classifier(SeqNet(norm=True, hidden=1000))  # inp.weight: 5,000 weights over sequences
    per_example = PerExampleReference(N, "gradient")
    uniform = NaiveReference(N)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        store = fit(tmp_path, module, Shaped(4, 5), [per_example, uniform])
    (message,) = responsibility_warnings(record)
    assert "net.inp.weight: at weight granularity" in message and "granularity='neuron'" in message
    assert "5,000 values per example per step (auto does so up to 4,096)" in message
    assert "net.norm.weight: it belongs to a LayerNorm" in message and "net.norm.bias" in message
    forms = {n: store.param(n).example_form for n in store.parameters}
    assert forms == {
        "net.inp.weight": None,
        "net.inp.bias": "dense",
        "net.norm.weight": None,
        "net.norm.bias": None,
        "net.out.weight": "outer",
        "net.out.bias": "dense",
    }
    assert store.spec.attribution == "per_example" and store.spec.share_rule == "gradient"
    # float32 shares of 1,000 units: where the examples' gradients nearly cancel, Δw / Σ g loses digits
    assert_matches(store, per_example, ["net.inp.bias", "net.out.weight", "net.out.bias"], rtol=2e-3, atol_frac=1e-5)
    assert_matches(store, uniform, ["net.inp.weight", "net.norm.weight", "net.norm.bias"])
    small = fit(tmp_path / "small", Classifier(SeqNet()), Shaped(4, 5), [])  # 30 weights: journaled densely
    assert small.param("net.inp.weight").example_form == "dense"


def test_auto_with_neuron_granularity_records_sequence_and_conv_layers_per_example(tmp_path):
    module = Classifier(SeqNet())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        store = fit(tmp_path / "seq", module, Shaped(4, 5), [], granularity="neuron")
    assert responsibility_warnings(record) == []
    assert {store.param(n).example_form for n in store.parameters} == {"units"}
    store = fit(tmp_path / "conv", Classifier(ConvNet()), Shaped(2, 8, 8), [], granularity="neuron")
    assert {store.param(n).example_form for n in store.parameters} == {"units"}


def test_auto_falls_back_for_a_weight_used_without_calling_its_layer(tmp_path):
    class Functional(TinyNet):
        def training_step(self, batch, batch_idx):
            hidden = torch.relu(nn.functional.linear(batch[0], self.net[0].weight, self.net[0].bias))
            return nn.functional.cross_entropy(self.net[2](hidden), batch[1])

    with pytest.warns(UserWarning, match="net.0.weight: its layer was not called with gradient"):
        store = fit(tmp_path / "a", Functional(), IndexedData(N), [])
    assert store.param("net.0.weight").example_form is None and store.param("net.2.weight").example_form == "outer"
    with pytest.raises(LayerSelectionError, match="net.0.weight: its layer was not called"):
        fit(tmp_path / "b", Functional(), IndexedData(N), [], attribution="per_example")


def test_batch_norm_beside_per_example_layers_warns(tmp_path):
    with pytest.warns(UserWarning, match=r"batch norm layers in training mode \(net.bn\)"):
        store = fit(tmp_path, Classifier(ConvNet(batch_norm=True)), Shaped(2, 8, 8), [], granularity="neuron")
    assert store.param("net.bn.weight").example_form is None and store.param("net.conv.weight").example_form == "units"


def test_uniform_is_the_paper_and_records_no_per_example_values(tmp_path):
    ref = NaiveReference(N)
    store = fit(tmp_path, TinyNet(), IndexedData(N), [ref], attribution="uniform")
    assert store.spec.attribution == "uniform" and store.spec.example_width == 0
    assert_matches(store, ref, store.parameters, rtol=2e-5, atol_frac=1e-7)
