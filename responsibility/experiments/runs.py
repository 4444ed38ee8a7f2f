"""The training runs the experiment pipelines share: one run recorded with the responsibility callback, fresh
unrecorded fits (the retrained models of LDS, cleanlab and the Figure 4 loop), batched predictions, and the replay
of a run's checkpoints for TracIn.

Both build the model from ``cfg.model`` and the Trainer from ``cfg.trainer`` (``conf/trainer/quiet.yaml``: nothing
written besides what the callbacks write); the callback comes from ``cfg.callbacks.responsibility``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, TensorDataset

from responsibility.evaluation.peers import LastLayerState, last_layer_state
from responsibility.query import final_layer
from responsibility.store import ResponsibilityStore

__all__ = [
    "Checkpoints",
    "RecordedRun",
    "accuracy",
    "checkpoint_states",
    "fit_fresh",
    "predict",
    "prepared_data",
    "record_run",
]

Checkpoints = list[tuple[dict[str, torch.Tensor], float]]

log = logging.getLogger(__name__)


@dataclass
class RecordedRun:
    """One training run of ``cfg.model`` with the responsibility callback: the model and its store."""

    seed: int
    model: L.LightningModule
    store: ResponsibilityStore
    wall_s: float


def prepared_data(cfg: DictConfig) -> Any:
    """``cfg.data`` instantiated and set up (both splits built), after seeding everything with ``cfg.seed``."""
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return datamodule


def record_run(
    cfg: DictConfig,
    loader: DataLoader,
    seed: int,
    *,
    store: str | Path | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> RecordedRun:
    """Train a fresh ``cfg.model`` seeded with ``seed`` (initial weights and shuffling) on ``loader``, recording
    with ``cfg.callbacks.responsibility`` into ``store`` (default: the config's ``store``), ``callbacks`` beside it.
    """
    start = time.perf_counter()
    L.seed_everything(seed, verbose=False)
    model = instantiate(cfg.model)
    options = {} if store is None else {"store": str(store)}
    recorder = instantiate(cfg.callbacks.responsibility, **options, _convert_="all")
    instantiate(cfg.trainer, callbacks=[recorder, *callbacks]).fit(model, train_dataloaders=loader)
    wall = time.perf_counter() - start
    log.info("trained seed %d in %.1f s, recorded into %s", seed, wall, recorder.store_path)
    return RecordedRun(seed, model, ResponsibilityStore.open(recorder.store_path), wall)


def fit_fresh(
    cfg: DictConfig, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, seed: int
) -> L.LightningModule:
    """A fresh ``cfg.model`` (seeded), trained on ``(x, y)`` for ``epochs`` without any recording callback."""
    L.seed_everything(seed, verbose=False)
    model = instantiate(cfg.model)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    instantiate(cfg.trainer, max_epochs=epochs).fit(model, train_dataloaders=loader)
    return model


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` in eval mode, (N, C)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The share of ``x`` that ``model`` classifies as ``y``."""
    return float((predict(model, x).argmax(1) == y).float().mean())


def checkpoint_states(cfg: DictConfig, checkpoints: Checkpoints, x: torch.Tensor) -> list[LastLayerState]:
    """Last-layer inputs and logits of ``x`` under each ``(state_dict, lr)`` checkpoint (TracInCP)."""
    replay = instantiate(cfg.model)
    layer = final_layer(replay, cfg.data.num_classes)
    if layer is None:
        raise ValueError(f"TracIn needs a final nn.Linear with {cfg.data.num_classes} outputs in the model")
    states = []
    for state, lr in checkpoints:
        replay.load_state_dict(state)
        states.append(last_layer_state(replay, layer, x, lr))
    return states
