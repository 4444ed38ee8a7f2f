"""Explanations of test inputs, measured: quanda-style sanity metrics and LDS, for responsibility and TracIn."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig

from responsibility.evaluation import (
    class_detection,
    linear_datamodeling_score,
    model_randomization,
    topk_cardinality,
)
from responsibility.evaluation.peers import tracin_influence
from responsibility.experiments.runs import Checkpoints, checkpoint_states, fit_fresh, predict
from responsibility.query import QueryOptions, attribute
from responsibility.store import ResponsibilityStore

__all__ = ["explain_test_inputs", "lds_scores", "sanity_metrics"]


def explain_test_inputs(
    cfg: DictConfig,
    model: L.LightningModule,
    store: ResponsibilityStore,
    checkpoints: Checkpoints,
    x: torch.Tensor,
    y: torch.Tensor,
    x_test: torch.Tensor,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(predicted classes, {method: (n_test, N) attributions}) for test inputs, explaining the prediction.

    Responsibility: the paper's rule (:func:`attribute` with ``method="most_activated"``) with ``cfg.sanity``'s
    layers and sign, and a signed variant (R_pos − R_neg of the same chosen weights). TracIn: last-layer TracInCP
    over ``checkpoints``.
    """
    s = cfg.sanity
    layers = None if s.layers is None else [str(v) for v in s.layers]
    opts = QueryOptions(method="most_activated", layers=layers, sign=s.sign)
    predicted = predict(model, x_test).argmax(1).numpy()
    tracin = tracin_influence(
        checkpoint_states(cfg, checkpoints, x_test), predicted, checkpoint_states(cfg, checkpoints, x), y
    )
    return predicted, {
        "responsibility": attribute(model, store, x_test, opts),
        "responsibility_signed": attribute(model, store, x_test, opts, sign="net"),
        "tracin": tracin,
    }


def sanity_metrics(
    attributions: dict[str, np.ndarray],
    randomized: dict[str, np.ndarray],
    predicted: np.ndarray,
    y: torch.Tensor,
    k: int,
) -> dict[str, dict[str, float]]:
    """Class detection, model randomization and top-k cardinality of each attribution method."""
    labels = y.numpy()
    out = {}
    for name, att in attributions.items():
        top = np.argsort(-att, axis=1, kind="stable")[:, :k]
        out[name] = {
            "class_detection": class_detection(labels[top[:, 0]], predicted),
            "model_randomization": model_randomization(att, randomized[name]),
            "topk_cardinality": topk_cardinality(top),
        }
    return out


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
    for s in range(c.subsets):
        ids = np.sort(rng.choice(n, size=round(c.fraction * n), replace=False))
        masks[s, ids] = True
        m = fit_fresh(cfg, x[ids], y[ids], c.epochs, c.batch_size, cfg.seed)
        outputs[s] = predict(m, x_test).gather(1, torch.as_tensor(targets)[:, None])[:, 0].numpy()
    return {name: linear_datamodeling_score(att, masks, outputs) for name, att in attributions.items()}
