"""Models the project did not write, recorded with the default settings and at neuron granularity: Lightning's demo
Transformer (Embedding, nn.Transformer with MultiheadAttention and LayerNorm, a Linear decoder over token positions)
on generated token data, and a small ResNet with BatchNorm. Recording works, says in one warning which parameters
it records uniformly and why, and R adds up: over all examples, a parameter recorded per example has R_pos − R_neg
summing to its total change (shares of each step sum to Δw), and one recorded uniformly to batch size × its change.
"""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pytest
import torch
from helpers import make_trainer
from lightning.pytorch.demos import LightningTransformer, Transformer
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from responsibility import ResponsibilityCallback, ResponsibilityStore
from responsibility.experiments.models import BasicBlock
from responsibility.recording.attribution import DENSE_LIMIT

N, BATCH, VOCAB, BLOCK = 16, 4, 30, 8


class Tokens(Dataset):
    """WikiText2-like blocks of a generated token stream: (inputs, next tokens)."""

    def __init__(self) -> None:
        self.data = torch.randint(0, VOCAB, (N * BLOCK + 1,), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int):
        start = i * BLOCK
        return self.data[start : start + BLOCK], self.data[start + 1 : start + BLOCK + 1]


class SmallTransformer(LightningTransformer):
    """The demo LightningModule (its training step and SGD) around a small demo Transformer."""

    def __init__(self) -> None:
        super().__init__(vocab_size=VOCAB)
        torch.manual_seed(0)
        # linear1/linear2 (8,192 weights) above auto's dense limit at weight granularity, the decoder below it.
        self.model = Transformer(vocab_size=VOCAB, ninp=64, nhead=2, nhid=128, nlayers=1, dropout=0.0)

    def prepare_data(self) -> None:
        """The demo downloads WikiText2 here; these tests generate their tokens."""


class ResNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 32, stride=2)  # conv2: 9,216 weights, above auto's dense limit
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        return self.fc(self.layer2(self.layer1(self.stem(x))).mean((2, 3)))

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def images() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(N, 1, 8, 8, generator=g), torch.randint(0, 3, (N,), generator=g))


def record(tmp_path, module, data, **cb_kw):
    start = {n: p.detach().clone() for n, p in module.named_parameters()}
    cb = ResponsibilityCallback(tmp_path / "s.zarr", **cb_kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(tmp_path, [cb], max_epochs=2).fit(module, DataLoader(data, batch_size=BATCH, shuffle=True))
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    messages = [str(w.message) for w in caught if str(w.message).startswith("responsibility:")]
    change = {n: (p.detach() - start[n]).double().numpy() for n, p in module.named_parameters()}
    return store, messages, change


def skipped_in(messages: list[str]) -> dict[str, str]:
    """Parameter -> reason, from the one attribution='auto' warning."""
    (warning,) = [m for m in messages if "attribution='auto'" in m]
    lines = [line.strip()[2:] for line in warning.splitlines()[1:]]
    return dict(line.split(": ", 1) for line in lines)


def assert_adds_up(store: ResponsibilityStore, change: dict[str, np.ndarray]) -> None:
    for name in store.parameters:
        p = store.param(name)
        signed = (store.read(name, "pos") - store.read(name, "neg")).sum(0, dtype=np.float64)
        want = change[name] if p.granularity == "weight" else change[name].reshape(p.shape[0], -1).sum(1)
        if p.example_form is None:
            want = BATCH * want  # every example of a step gets the whole Δw
        np.testing.assert_allclose(signed, want, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(want).max()), err_msg=name)


def transformer_reasons(granularity: str) -> dict[str, str]:
    """What the demo Transformer cannot record per example, and why (the expected warning)."""
    module = SmallTransformer()
    out = {}
    mha = "nn.MultiheadAttention applies its out_proj weights itself"
    for name, _ in module.named_parameters():
        owner = module.get_submodule(name.rpartition(".")[0])
        if name.endswith("out_proj.weight") or name.endswith("out_proj.bias"):
            out[name] = mha
        elif isinstance(owner, (nn.Embedding, nn.LayerNorm, nn.MultiheadAttention)):
            out[name] = f"it belongs to a {type(owner).__name__}"
        elif granularity == "weight" and isinstance(owner, nn.Linear) and owner.weight.numel() > DENSE_LIMIT:
            if name.endswith("weight"):
                out[name] = "at weight granularity its per-example gradients would be journaled densely"
    return out


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_lightning_demo_transformer_records_and_names_what_it_records_uniformly(tmp_path, granularity):
    store, messages, change = record(tmp_path, SmallTransformer(), Tokens(), granularity=granularity)
    skipped = skipped_in(messages)
    want = transformer_reasons(granularity)
    assert skipped.keys() == want.keys()
    for name, reason in want.items():
        assert skipped[name].startswith(reason), (name, skipped[name])
    per_example = {n for n in store.parameters if store.param(n).example_form is not None}
    assert per_example == set(store.parameters) - want.keys()
    assert "model.decoder.bias" in per_example and "model.transformer.encoder.layers.0.linear1.bias" in per_example
    # Linear weights over token positions: per example, densely (small) or per unit (neuron granularity).
    assert store.param("model.decoder.weight").example_form == ("dense" if granularity == "weight" else "units")
    assert_adds_up(store, change)


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_small_resnet_with_batch_norm_records_and_warns_about_batch_norm(tmp_path, granularity):
    module = ResNet()
    store, messages, change = record(tmp_path, module, images(), granularity=granularity)
    skipped = skipped_in(messages)
    norms = {n for n, _ in module.named_parameters() if ".1." in n or "bn" in n}
    big = {n for n, p in module.named_parameters() if n not in norms and p.numel() > DENSE_LIMIT}
    assert big == {"layer2.conv2.weight"}
    assert skipped.keys() == (norms if granularity == "neuron" else norms | big)
    assert all(skipped[n].startswith("it belongs to a BatchNorm2d") for n in norms)
    (batch_norm,) = [m for m in messages if "batch norm layers in training mode" in m]
    assert "stem.1" in batch_norm and "layer2.downsample.1" in batch_norm
    assert store.param("fc.weight").example_form == ("outer" if granularity == "weight" else "units")
    assert_adds_up(store, change)
