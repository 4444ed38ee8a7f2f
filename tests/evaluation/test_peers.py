"""Peer scores (responsibility.evaluation.peers) and MarginCallback against hand computations and explicit autograd."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers import SgdClassifier, make_trainer
from responsibility.callbacks.margins import MarginCallback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from responsibility.evaluation.peers import (
    LastLayerState,
    aum,
    cleanlab_label_quality,
    cross_validated_probabilities,
    final_loss,
    last_layer_state,
    margins,
    self_confidence,
    stratified_folds,
    tracin_influence,
    tracin_self_influence,
)


def test_margins_aum_and_loss_by_hand():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 5.0]])
    np.testing.assert_allclose(margins(logits, [0, 0, 2]), [1.0, -3.0, 4.0])
    # a hand-made margin sequence over 3 epochs: example 1 is learnt late, example 2 never
    history = np.array([[1.0, -2.0, -1.0], [2.0, 0.0, -3.0], [3.0, 5.0, -2.0]])
    np.testing.assert_allclose(aum(history), [2.0, 1.0, -2.0])
    np.testing.assert_allclose(final_loss([[0.0, 0.0]], [1]), [np.log(2.0)])
    with pytest.raises(ValueError):
        margins(logits, [0, 3, 1])
    with pytest.raises(ValueError):
        aum(np.zeros((0, 3)))


def _net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))


def _per_example_grads(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Explicit autograd, one example at a time: the flattened gradient of the last layer's weight (and bias)."""
    rows = []
    for i in range(len(x)):
        net.zero_grad()
        nn.functional.cross_entropy(net(x[i : i + 1]), y[i : i + 1]).backward()
        last = net[2]
        rows.append(torch.cat([last.weight.grad.flatten(), *([] if last.bias is None else [last.bias.grad])]).double())
    return torch.stack(rows)


def test_tracin_matches_explicit_per_example_gradients():
    x, y = torch.randn(7, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    xt, yt = torch.randn(3, 4), torch.tensor([2, 0, 1])
    checkpoints = [(_net(0), 0.1), (_net(1), 0.05)]  # two checkpoints with their learning rates
    self_want = torch.zeros(7, dtype=torch.float64)
    pair_want = torch.zeros(3, 7, dtype=torch.float64)
    for net, lr in checkpoints:
        g = _per_example_grads(net, x, y)
        self_want += lr * (g * g).sum(1)
        pair_want += lr * _per_example_grads(net, xt, yt) @ g.T
    train = [last_layer_state(net, net[2], x, lr, batch_size=3) for net, lr in checkpoints]
    test = [last_layer_state(net, net[2], xt, lr) for net, lr in checkpoints]
    np.testing.assert_allclose(tracin_self_influence(train, y), self_want.numpy(), rtol=1e-5)
    np.testing.assert_allclose(tracin_influence(test, yt, train, y), pair_want.numpy(), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(np.diag(tracin_influence(train, y, train, y)), tracin_self_influence(train, y))


def test_tracin_without_bias_and_errors():
    net = _net(0)
    net[2] = nn.Linear(5, 3, bias=False)
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 2, 0])
    state = last_layer_state(net, net[2], x, 1.0)
    assert state.bias is False and state.features.shape == (4, 5)
    g = _per_example_grads(net, x, y)
    np.testing.assert_allclose(tracin_self_influence([state], y), (g * g).sum(1).numpy(), rtol=1e-5)
    with pytest.raises(ValueError):
        tracin_self_influence([], y)
    with pytest.raises(TypeError):
        last_layer_state(net, net[1], x, 1.0)
    with pytest.raises(ValueError):
        tracin_self_influence([LastLayerState(state.features[:3], state.logits, 1.0, False)], y)


def test_stratified_folds_and_cross_validation():
    labels = np.array([0] * 10 + [1] * 5)
    fold = stratified_folds(labels, 5, seed=3)
    for f in range(5):
        assert np.bincount(labels[fold == f], minlength=2).tolist() == [2, 1]
    seen = []

    def fit_predict(train_ids: np.ndarray, held: np.ndarray) -> np.ndarray:
        assert not set(train_ids) & set(held) and len(train_ids) + len(held) == 15
        seen.extend(held.tolist())
        return np.stack([held / 100.0, 1 - held / 100.0], axis=1)  # a probability that names its example

    probs = cross_validated_probabilities(labels, fit_predict, 2, folds=5, seed=3)
    assert sorted(seen) == list(range(15))
    np.testing.assert_allclose(probs[:, 0], np.arange(15) / 100.0)
    with pytest.raises(ValueError):
        cross_validated_probabilities(labels, lambda t, h: np.zeros((1, 2)), 2, folds=5)
    with pytest.raises(ValueError):
        stratified_folds(labels, 1)


def test_self_confidence_and_cleanlab():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 0, 1])
    np.testing.assert_allclose(self_confidence(probs, labels), [0.9, 0.3, 0.4])
    pytest.importorskip("cleanlab")
    np.testing.assert_allclose(cleanlab_label_quality(probs, labels), [0.9, 0.3, 0.4])


def test_cleanlab_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.rank", None)
    with pytest.raises(ImportError, match=r"responsibility\[eval\]"):
        cleanlab_label_quality(np.array([[0.5, 0.5]]), np.array([0]))


def test_margin_callback_records_epoch_margins_and_checkpoints(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    model = SgdClassifier(_net(0))
    cb = MarginCallback(batch_size=8, keep_checkpoints=True)
    make_trainer(tmp_path, [cb], max_epochs=3).fit(model, DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True))
    assert cb.margins.shape == (3, 30) and len(cb.checkpoints) == 3
    for (state, lr), row in zip(cb.checkpoints, cb.margins, strict=True):
        replay = SgdClassifier(_net(0))
        replay.load_state_dict(state)
        assert lr == 0.1
        with torch.no_grad():
            np.testing.assert_allclose(row, margins(replay(x), y), rtol=1e-6)
    # the last checkpoint is the trained model, and the epochs differ (training moved the margins)
    with torch.no_grad():
        np.testing.assert_allclose(cb.margins[-1], margins(model(x), y), rtol=1e-6)
    assert not np.allclose(cb.margins[0], cb.margins[-1])
    assert model.training
