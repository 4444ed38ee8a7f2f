"""Rankings of the training examples for mislabel inspection (higher = inspect first): the responsibility scores of
``cfg.scores`` and the peers of ``cfg.peers`` on the same recorded run."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig

from responsibility.analysis.scores import class_agreement, held_out_loss, label_push, self_responsibility
from responsibility.callbacks.margins import MarginCallback
from responsibility.choices import check_choice
from responsibility.evaluation.peers import (
    LastLayerState,
    aum,
    cleanlab_label_quality,
    cross_validated_probabilities,
    final_loss,
    tracin_self_influence,
)
from responsibility.experiments.runs import fit_fresh, predict
from responsibility.store import ResponsibilityStore

__all__ = ["cleanlab_scores", "peer_scores", "responsibility_scores"]

SCORE_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "self_responsibility": self_responsibility,
    "class_agreement": class_agreement,
    "label_push": label_push,
    # Needs the output layer recorded with per-example attribution (docs/results/mislabel_score.md).
    "held_out_loss": held_out_loss,
}


def responsibility_scores(store: ResponsibilityStore, scores_cfg: DictConfig) -> dict[str, np.ndarray]:
    """Suspicion scores (higher = inspect first) from the store, one per entry of ``cfg.scores``."""
    out = {}
    tracked = set(store.parameters)
    for key, entry in scores_cfg.items():
        name = str(key)
        check_choice(f"scores.{name}.kind", entry.kind, sorted(SCORE_KINDS))
        params = None if entry.parameters is None else [str(p) for p in entry.parameters]
        missing = sorted(set(params or ()) - tracked)
        if missing:
            raise ValueError(f"scores.{name}: {missing} are not recorded in the store; it has {store.parameters}")
        # epochs: null (all of training), an epoch or a list of consecutive ones; negative = from the last.
        epochs = entry.get("epochs")
        if isinstance(epochs, ListConfig):
            epochs = [int(e) for e in epochs]
        steps = None if epochs is None else store.epoch_steps(epochs)
        out[name] = SCORE_KINDS[entry.kind](store, params, steps=steps)
    return out


def peer_scores(
    cfg: DictConfig,
    model: L.LightningModule,
    margins_cb: MarginCallback,
    states: list[LastLayerState],
    x: torch.Tensor,
    y: torch.Tensor,
) -> dict[str, np.ndarray]:
    """Suspicion scores of the training-free peers on the recorded run (``states``: TracIn checkpoints)."""
    peers = cfg.peers
    out: dict[str, np.ndarray] = {}
    if peers.final_loss:
        out["final_loss"] = final_loss(predict(model, x), y)
    if peers.aum:
        out["aum"] = -aum(margins_cb.margins)
    if peers.tracin:
        out["tracin_self_influence"] = tracin_self_influence(states, y)
    return out


def cleanlab_scores(cfg: DictConfig, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """1 − cleanlab's label quality from out-of-fold probabilities (``cfg.peers.cleanlab``: one model per fold)."""
    c = cfg.peers.cleanlab

    def fit_predict(train_ids: np.ndarray, held: np.ndarray) -> np.ndarray:
        m = fit_fresh(cfg, x[train_ids], y[train_ids], c.epochs, c.batch_size, cfg.seed)
        return torch.softmax(predict(m, x[held]), dim=1).numpy()

    probs = cross_validated_probabilities(y.numpy(), fit_predict, cfg.data.num_classes, c.folds, cfg.seed)
    return 1.0 - cleanlab_label_quality(probs, y.numpy(), method=c.method)
