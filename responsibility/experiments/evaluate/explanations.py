"""Explanations of test inputs, measured: quanda-style sanity metrics and LDS, for responsibility and TracIn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from responsibility.evaluation import (
    class_detection,
    linear_datamodeling_score,
    randomization_test,
    topk_cardinality,
)
from responsibility.evaluation.peers import tracin_influence
from responsibility.experiments.runs import Checkpoints, checkpoint_states, fit_fresh, predict
from responsibility.progress import bar
from responsibility.query import attribute
from responsibility.store import ResponsibilityStore

__all__ = ["Subject", "explainers", "lds_scores", "sanity_metrics"]


@dataclass
class Subject:
    """A model to explain and the checkpoints TracIn replays for it."""

    model: L.LightningModule
    checkpoints: Checkpoints


Explain = Callable[[Subject, np.ndarray], np.ndarray]


def explainers(
    cfg: DictConfig, store: ResponsibilityStore, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor
) -> dict[str, Explain]:
    """``{name: explain(subject, targets) -> (n_test, N) scores}`` for every method to measure.

    Responsibility: one entry per ``cfg.sanity.methods`` (``name: {attribute() keywords}``; ``{}`` is
    :func:`attribute`'s default explanation). Peer: ``tracin``, last-layer TracInCP over the subject's
    checkpoints. ``targets`` (one class per test input) is what every method explains.
    """
    methods = cast(dict[str, Any], OmegaConf.to_container(cfg.sanity.methods, resolve=True))

    def responsibility(options: dict[str, Any]) -> Explain:
        return lambda s, targets: attribute(s.model, store, x_test, **options, targets=targets)

    def tracin(s: Subject, targets: np.ndarray) -> np.ndarray:
        test_states = checkpoint_states(cfg, s.checkpoints, x_test)
        return tracin_influence(test_states, targets, checkpoint_states(cfg, s.checkpoints, x), y)

    out = {str(name): responsibility(dict(options or {})) for name, options in methods.items()}
    return out | {"tracin": tracin}


def sanity_metrics(
    methods: dict[str, Explain],
    trained: Subject,
    randomized: Subject,
    targets: np.ndarray,
    y: torch.Tensor,
    k: int,
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Class detection, model randomization (the re-initialised model explains the trained model's ``targets``:
    :func:`randomization_test`) and top-k cardinality of each method; and each method's trained attributions."""
    labels = y.numpy()
    metrics: dict[str, dict[str, float]] = {}
    attributions: dict[str, np.ndarray] = {}
    for name, explain in methods.items():
        att = attributions[name] = explain(trained, targets)
        top = np.argsort(-att, axis=1, kind="stable")[:, :k]

        def reuse(s: Subject, t: np.ndarray, att: np.ndarray = att, explain: Explain = explain) -> np.ndarray:
            return att if s is trained else explain(s, t)  # the trained model's scores are computed above

        metrics[name] = {
            "class_detection": class_detection(labels[top[:, 0]], targets),
            "model_randomization": randomization_test(reuse, trained, randomized, targets),
            "topk_cardinality": topk_cardinality(top),
        }
    return metrics, attributions


def lds_scores(
    cfg: DictConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
    targets: np.ndarray,
    attributions: dict[str, np.ndarray],
) -> dict[str, float]:
    """LDS of each attribution: ``cfg.lds.subsets`` random subsets of ``cfg.lds.fraction`` of the training set,
    one model retrained on each (same seed, so only the data differ); the output is the logit of ``targets``."""
    c = cfg.lds
    rng = np.random.default_rng([cfg.seed, 2])
    n = len(x)
    masks = np.zeros((c.subsets, n), dtype=bool)
    outputs = np.zeros((c.subsets, len(x_test)))
    for s in bar(range(c.subsets), desc="LDS retrainings", unit="model"):
        ids = np.sort(rng.choice(n, size=round(c.fraction * n), replace=False))
        masks[s, ids] = True
        m = fit_fresh(cfg, x[ids], y[ids], c.epochs, c.batch_size, cfg.seed)
        outputs[s] = predict(m, x_test).gather(1, torch.as_tensor(targets)[:, None])[:, 0].numpy()
    return {name: linear_datamodeling_score(att, masks, outputs) for name, att in attributions.items()}
