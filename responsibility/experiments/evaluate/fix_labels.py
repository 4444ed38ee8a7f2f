"""The paper's Figure 4 loop: fix the labels of the first part of a ranking, retrain, measure test accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from responsibility.experiments.runs import accuracy, fit_fresh
from responsibility.progress import bar

__all__ = ["fix_labels_curve", "fix_labels_orders"]


def fix_labels_orders(
    mislabel: list[dict[str, Any]], rankings: dict[str, tuple[str, np.ndarray]], seed: int
) -> dict[str, np.ndarray]:
    """The orders the loop checks the data in: the best responsibility score and the best peer by AUC (ties to the
    later name), and a seeded random order."""
    auc = {r["score"]: (r["kind"], r["auc"]) for r in mislabel}
    orders = {}
    for kind in ("responsibility", "peer"):
        best = max((a, n) for n, (k, a) in auc.items() if k == kind)[1]
        orders[f"{best} ({kind})"] = np.argsort(-rankings[best][1], kind="stable")
    n = len(next(iter(rankings.values()))[1])
    orders["random"] = np.random.default_rng([seed, 4]).permutation(n)
    return orders


def fix_labels_curve(
    cfg: DictConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    y_clean: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    orders: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The paper's Figure 4: for each ranking and each fraction f of the data checked (``cfg.fix_labels.steps``
    equal steps), give the first f·N examples their clean label, retrain from the same seed, test accuracy.
    Identical label sets (f = 0, f = 1) are trained once."""
    c = cfg.fix_labels
    fractions = np.linspace(0.0, 1.0, c.steps + 1)
    trained: dict[bytes, float] = {}
    curves = {}
    for name, order in bar(orders.items(), desc="fix-labels curves", unit="ranking"):
        curve = []
        for f in fractions:
            checked = torch.as_tensor(order[: round(f * len(x))])
            labels = y.clone()
            labels[checked] = y_clean[checked]
            key = labels.numpy().tobytes()
            if key not in trained:
                m = fit_fresh(cfg, x, labels, c.epochs, c.batch_size, cfg.seed)
                trained[key] = accuracy(m, x_test, y_test)
            curve.append(trained[key])
        curves[name] = curve
    return {"fractions": fractions.round(4).tolist(), "accuracy": curves, "retrained_models": len(trained)}
