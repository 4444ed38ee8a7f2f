"""Peer methods for finding mislabelled training data, measured on the same runs as responsibility.

Each score is per training example; the ``*_suspicion`` helpers of the evaluation turn them into "higher =
inspect first". Only numpy and torch are imported here; cleanlab is imported lazily (``pip install
'responsibility[eval]'``).

- :func:`final_loss`: cross-entropy of the trained model on each example (high = suspicious).
- :func:`margins` / :func:`aum`: the margin is the logit of the assigned label minus the largest other logit;
  AUM (Pleiss et al., 2020) averages it over training epochs (low = suspicious). The epoch margins come from
  :class:`responsibility.callbacks.margins.MarginCallback`.
- :func:`tracin_self_influence` / :func:`tracin_influence`: TracIn restricted to the last Linear layer, with one
  term per saved checkpoint, in the manner of captum's ``TracInCPFast`` (reimplemented here in a few lines rather
  than depending on captum). For cross-entropy the gradient of the loss with respect to the logits is
  ``g = softmax(z) − onehot(y)``, and the gradient with respect to the last layer's weights and bias is the outer
  product of ``g`` with ``[a, 1]`` (``a`` = the layer's input), so
  ``TracIn(x, z) = Σ_checkpoints lr · (g_x · g_z) · (a_x · a_z + 1)`` and the self-influence is
  ``Σ_checkpoints lr · ‖g‖² · (‖a‖² + 1)`` (high = suspicious).
  **Difference from captum:** ``TracInCPFast`` takes the gradient with respect to the final layer's weight only
  and leaves out its bias, i.e. it computes ``Σ lr · (g_x · g_z) · (a_x · a_z)``. These functions include the
  bias whenever the layer has one (:attr:`LastLayerState.bias`), so they differ from captum by the bias term
  ``Σ lr · (g_x · g_z)``; with ``bias=False`` they are captum's formula.
- :func:`cross_validated_probabilities`: out-of-fold predicted probabilities (stratified K folds).
- :func:`self_confidence` and :func:`cleanlab_label_quality`: the predicted probability of the given label, which
  is cleanlab's default label-quality method (``cleanlab.rank.get_label_quality_scores``); low = suspicious.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "LastLayerState",
    "aum",
    "cleanlab_label_quality",
    "cross_validated_probabilities",
    "final_loss",
    "last_layer_state",
    "margins",
    "self_confidence",
    "stratified_folds",
    "tracin_influence",
    "tracin_self_influence",
]


def _labels(labels: torch.Tensor | np.ndarray, n: int, num_classes: int) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
    if n and not 0 <= int(y.min()) <= int(y.max()) < num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return y


def _logits(logits: torch.Tensor | np.ndarray) -> torch.Tensor:
    z = torch.as_tensor(np.asarray(logits) if isinstance(logits, np.ndarray) else logits).detach().double()
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must be (N, classes) with at least two classes, got {tuple(z.shape)}")
    return z


def final_loss(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-example cross-entropy ``−log softmax(z)[y]``: shape (N,), float64."""
    z = _logits(logits)
    return F.cross_entropy(z, _labels(labels, len(z), z.shape[1]), reduction="none").numpy()


def margins(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """Logit of the assigned label minus the largest other logit: shape (N,), float64 (negative = misclassified)."""
    z = _logits(logits)
    y = _labels(labels, len(z), z.shape[1])
    assigned = z.gather(1, y[:, None])[:, 0]
    others = z.scatter(1, y[:, None], float("-inf")).max(dim=1).values
    return (assigned - others).numpy()


def aum(margin_history: np.ndarray) -> np.ndarray:
    """Area under the margin: the mean over epochs of ``margin_history`` (epochs, N); shape (N,)."""
    m = np.asarray(margin_history, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] == 0:
        raise ValueError(f"margin_history must be (epochs >= 1, N), got shape {m.shape}")
    return m.mean(axis=0)


@dataclass
class LastLayerState:
    """What TracInCPFast needs from one checkpoint: the last layer's input ``features`` (N, d), the model's
    ``logits`` (N, C), the checkpoint's learning rate and whether the layer has a bias."""

    features: torch.Tensor
    logits: torch.Tensor
    lr: float
    bias: bool = True


@torch.no_grad()
def last_layer_state(
    model: nn.Module, layer: nn.Linear, inputs: torch.Tensor, lr: float, batch_size: int = 1024
) -> LastLayerState:
    """Run ``model`` on ``inputs`` in eval mode and capture ``layer``'s input (a forward hook) and the logits."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    feats: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, args, _out: feats.append(args[0].detach().flatten(1).cpu()))
    was_training = model.training
    model.eval()
    try:
        logits = [model(inputs[i : i + batch_size]).detach().cpu() for i in range(0, len(inputs), batch_size)]
    finally:
        handle.remove()
        model.train(was_training)
    if len(feats) != len(logits):
        raise ValueError("the layer must be called exactly once per forward pass of the model")
    empty = torch.zeros((0, layer.in_features)), torch.zeros((0, layer.out_features))
    return LastLayerState(
        torch.cat(feats) if feats else empty[0],
        torch.cat(logits) if logits else empty[1],
        float(lr),
        layer.bias is not None,
    )


def _grad_and_input(state: LastLayerState, labels: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``g = softmax(z) − onehot(y)`` (N, C) and the layer input with the bias's constant 1 appended (N, d[+1])."""
    z = _logits(state.logits)
    y = _labels(labels, len(z), z.shape[1])
    g = torch.softmax(z, dim=1) - F.one_hot(y, z.shape[1]).double()
    a = state.features.detach().double()
    if a.shape[0] != len(z):
        raise ValueError(f"features have {a.shape[0]} rows but logits {len(z)}")
    if state.bias:
        a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], dim=1)
    return g, a


def tracin_self_influence(states: Sequence[LastLayerState], labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """``Σ_checkpoints lr · ‖∂loss/∂logits‖² · (‖a‖² + 1)``: last-layer TracIn self-influence, shape (N,)."""
    if not states:
        raise ValueError("TracIn needs at least one checkpoint")
    terms = []
    for s in states:
        g, a = _grad_and_input(s, labels)
        terms.append(s.lr * (g * g).sum(1) * (a * a).sum(1))
    return torch.stack(terms).sum(0).numpy()


def tracin_influence(
    test_states: Sequence[LastLayerState],
    test_labels: torch.Tensor | np.ndarray,
    train_states: Sequence[LastLayerState],
    train_labels: torch.Tensor | np.ndarray,
) -> np.ndarray:
    """Last-layer TracIn of every training example on every test input: (n_test, N).

    ``Σ_checkpoints lr · (g_test · g_train) · (a_test · a_train + 1)``; the two sequences are the same checkpoints
    (the learning rate is taken from ``train_states``).
    """
    if not train_states or len(test_states) != len(train_states):
        raise ValueError("test_states and train_states must hold the same (at least one) checkpoints")
    terms = []
    for st, sm in zip(test_states, train_states, strict=True):
        gt, at = _grad_and_input(st, test_labels)
        gm, am = _grad_and_input(sm, train_labels)
        terms.append(sm.lr * (gt @ gm.T) * (at @ am.T))
    return torch.stack(terms).sum(0).numpy()


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..folds-1) of each example: each class's examples are shuffled and dealt round-robin."""
    labels = np.asarray(labels)
    if not 2 <= folds <= len(labels):
        raise ValueError(f"folds must be in [2, {len(labels)}], got {folds}")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = np.arange(len(members)) % folds
    return fold


def cross_validated_probabilities(
    labels: np.ndarray,
    fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    num_classes: int,
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold predicted probabilities, (N, num_classes).

    ``fit_predict(train_ids, held_out_ids)`` trains a fresh model on ``train_ids`` and returns the predicted
    probabilities of ``held_out_ids`` (rows in that order). Folds are stratified by ``labels``.
    """
    fold = stratified_folds(labels, folds, seed)
    probs = np.zeros((len(fold), num_classes))
    for f in range(folds):
        held = np.flatnonzero(fold == f)
        p = np.asarray(fit_predict(np.flatnonzero(fold != f), held), dtype=np.float64)
        if p.shape != (len(held), num_classes):
            raise ValueError(f"fit_predict returned shape {p.shape}, expected {(len(held), num_classes)}")
        probs[held] = p
    return probs


def self_confidence(pred_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Predicted probability of the given label, ``pred_probs[i, labels[i]]`` (cleanlab's default score)."""
    p = np.asarray(pred_probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"pred_probs must be (N, classes), got shape {p.shape}")
    y = _labels(labels, len(p), p.shape[1]).numpy()
    return p[np.arange(len(p)), y]


def cleanlab_label_quality(pred_probs: np.ndarray, labels: np.ndarray, method: str = "self_confidence") -> np.ndarray:
    """cleanlab's ``get_label_quality_scores`` (low = likely mislabelled); needs the optional cleanlab package."""
    try:
        from cleanlab.rank import get_label_quality_scores
    except ImportError as e:
        raise ImportError(
            "cleanlab_label_quality needs cleanlab: pip install 'responsibility[eval]' "
            "(self_confidence() computes cleanlab's default method without it)"
        ) from e
    p = np.asarray(pred_probs, dtype=np.float64)
    return np.asarray(get_label_quality_scores(np.asarray(labels, dtype=np.int64), p, method=method), np.float64)
