"""Models the project did not write, through attribute/explain with a store recorded by the callback (uniform):
Lightning's demo Transformer on generated tokens, and a small ResNet with BatchNorm."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from helpers import make_trainer
from lightning.pytorch.demos import Transformer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from responsibility import ModelOutputError, ResponsibilityCallback, ResponsibilityStore, attribute, explain

VOCAB, LENGTH = 12, 5


class TokenModel(L.LightningModule):
    """Next-token prediction with the demo Transformer: forward(inputs, target) returns (batch·tokens, vocab)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = Transformer(vocab_size=VOCAB, ninp=8, nhead=2, nhid=16, nlayers=1, dropout=0.0)

    def forward(self, inputs, target):
        return self.model(inputs, target)

    def training_step(self, batch, batch_idx):
        inputs, target = batch
        return nn.functional.nll_loss(self(inputs, target), target.reshape(-1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def tokens(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Counting sequences mod VOCAB from random starts: the target is the input shifted by one."""
    start = torch.randint(0, VOCAB, (n, 1), generator=torch.Generator().manual_seed(seed))
    seq = (start + torch.arange(LENGTH + 1)) % VOCAB
    return seq[:, :-1], seq[:, 1:]


@pytest.fixture(scope="module")
def token_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tokens")
    model = TokenModel()
    cb = ResponsibilityCallback(tmp / "s.zarr", attribution="uniform", topk=4)
    make_trainer(tmp, [cb], max_epochs=1).fit(model, DataLoader(TensorDataset(*tokens(24, 0)), batch_size=4))
    return model, ResponsibilityStore.open(tmp / "s.zarr")


def last_token(out: torch.Tensor) -> torch.Tensor:
    return out.view(-1, LENGTH, VOCAB)[:, -1]  # (batch, vocab): the prediction after the whole input


def test_transformer_needs_to_be_told_how_to_call_it_and_what_to_explain(token_run):
    model, store = token_run
    x, _ = tokens(3, 1)
    with pytest.raises(TypeError):  # forward(inputs, target): model(x) cannot be called
        attribute(model, store, x)
    with pytest.raises(ModelOutputError, match=r"shape \(15, 12\) for 3 inputs.*pass output="):
        attribute(model, store, x, forward=lambda m, b: m(b, b))


@pytest.mark.parametrize("method", ["contribution", "most_activated"])
def test_transformer_explained_with_forward_and_output(token_run, method):
    model, store = token_run
    x, _ = tokens(3, 1)
    call = {"forward": lambda m, b: m(b, b), "output": last_token, "method": method}
    ex = explain(model, store, x, k=3, **call)  # integer tokens stay integers for the embedding
    scores = attribute(model, store, x, **call)
    assert scores.shape == (3, 24) and np.isfinite(scores).all()
    assert ex.example_ids.shape == (3, 3)
    with torch.no_grad():
        assert ex.predicted.tolist() == last_token(model(x, x)).argmax(1).tolist()
    # What no rule explains is listed, not a crash: embeddings, norms, the attention projections that
    # nn.MultiheadAttention applies as raw parameters (in_proj) or functionally (out_proj).
    assert "model.embedding.weight" in ex.unsupported
    assert any("in_proj_weight" in n for n in ex.unsupported)
    assert any("self_attn.out_proj.weight" in n for n in ex.unsupported)
    assert "model.decoder.weight" in ex.layers
    assert not set(ex.layers) & set(ex.unsupported)


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class ResNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
        self.block = Block(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.block(self.stem(x)).mean((2, 3)))

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_resnet_with_batchnorm_matches_per_input_autograd(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 6, 6), torch.randint(0, 3, (16,))
    model = ResNet()
    cb = ResponsibilityCallback(tmp_path / "s.zarr", attribution="uniform", topk=4)
    make_trainer(tmp_path, [cb], max_epochs=1).fit(model, DataLoader(TensorDataset(x, y), batch_size=4))
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    probe = torch.randn(3, 1, 6, 6)
    got = attribute(model, store, probe, normalize="none")
    model.eval()  # BatchNorm uses its running statistics, as the query does
    params = dict(model.named_parameters())
    supported = [n for n in store.parameters if not n.startswith(("stem.1", "block.bn"))]
    want = np.zeros((3, 16))
    for b in range(3):
        z = model(probe[b : b + 1])
        t = int(z.argmax())
        grads = torch.autograd.grad(z[0, t], [params[n] for n in supported])
        for n, g in zip(supported, grads, strict=True):
            push = store.read(n, "pos").reshape(16, -1).astype(np.float64) - store.read(n, "neg").reshape(16, -1)
            want[b] += push @ g.double().flatten().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    ex = explain(model, store, probe, k=4)
    assert sorted(ex.unsupported) == sorted(n for n in store.parameters if n not in supported)
