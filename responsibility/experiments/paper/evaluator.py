"""Paper Section 4: a secondary "evaluator" CNN learns to predict the actor (whether its prediction is correct, as
in the authors' released code, or the predicted class itself) from a test input alone or from the input stacked with
one explanation image: the most responsible training example, or the nearest training example (in input space or in
the actor's penultimate-feature space) of the predicted class."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from responsibility.choices import check_choice
from responsibility.experiments.datasets import ImageClassificationDataset
from responsibility.experiments.paper.explanations import nearest_examples, penultimate_features, responsible_examples
from responsibility.experiments.reporting import fraction, markdown_table, pyplot, save_figure, write_csv
from responsibility.experiments.runs import RecordedRun, predict

__all__ = ["EvaluatorCNN", "evaluator_experiment", "evaluator_markdown", "train_evaluator"]

EvaluatorTarget = Literal["correct", "decision"]
NearestSpace = Literal["input", "feature"]
log = logging.getLogger(__name__)


class EvaluatorCNN(nn.Module):
    """The evaluator of the authors' released code, in PyTorch: conv 32@3x3 (same) -> ReLU -> dropout ->
    max-pool 2 -> dropout -> fc 64 -> ReLU -> dropout -> fc ``num_outputs``."""

    def __init__(self, in_channels: int, image_size: int, num_outputs: int, dropout: float = 0.2) -> None:
        super().__init__()
        if min(in_channels, image_size, num_outputs) < 1 or image_size < 2:
            raise ValueError(f"bad evaluator shape: {in_channels} channels, size {image_size}, {num_outputs} outputs")
        self.conv = nn.Conv2d(in_channels, 32, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(32 * (image_size // 2) ** 2, 64)
        self.fc2 = nn.Linear(64, num_outputs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.dropout(F.relu(self.conv(x))), 2)
        x = self.dropout(F.relu(self.fc1(self.dropout(x.flatten(1)))))
        return self.fc2(x)


def train_evaluator(
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    num_outputs: int,
    c: DictConfig,
    seed: int,
) -> tuple[EvaluatorCNN, int]:
    """Adam on cross-entropy, early stopping on the validation loss (``c.patience`` epochs), best weights kept.
    Returns ``(model, epochs run)``."""
    torch.manual_seed(seed)
    model = EvaluatorCNN(x.shape[1], x.shape[-1], num_outputs, float(c.dropout))
    opt = torch.optim.Adam(model.parameters(), lr=float(c.lr))
    gen = torch.Generator().manual_seed(seed)
    best, best_state, bad, epochs_run = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    for _ in range(int(c.epochs)):
        epochs_run += 1
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), int(c.batch_size)):
            idx = order[i : i + int(c.batch_size)]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        val = float(F.cross_entropy(predict(model, x_val), y_val))
        if val < best - 1e-6:
            best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= int(c.patience):
                break
    model.load_state_dict(best_state)
    return model, epochs_run


def _stratified_split(strata: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) positions: ``round(fraction · size)`` of each stratum held out, at least one where it has 2."""
    held = []
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value))
        take = round(fraction * len(members))
        held.append(members[: max(take, 1 if len(members) > 1 else 0)])
    held_ids = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(len(strata)), held_ids)
    return kept, held_ids


def _explanation_ids(
    cfg: DictConfig, run: RecordedRun, train: ImageClassificationDataset, x: torch.Tensor, pred: np.ndarray
) -> dict[str, np.ndarray]:
    """The training example shown beside each pooled input, per explanation condition (``none`` shows none)."""
    c, e = cfg.evaluator, cfg.explain
    labels = train.targets.numpy()
    explanation_ids: dict[str, np.ndarray] = {}
    for cond in (str(v) for v in c.explanations):
        if cond == "none":
            continue
        if cond.startswith("responsibility_"):
            sign = cond.removeprefix("responsibility_")
            p, ids, _ = responsible_examples(run.model, run.store, x, k=1, layers=e.layers, sign=sign)
            if not np.array_equal(p, pred):
                raise RuntimeError("explain() predicted other classes than the actor's forward pass")
            explanation_ids[cond] = ids[:, 0]
        elif cond.startswith("nn_"):
            space = cond.removeprefix("nn_")
            check_choice(f"nearest-neighbour space of {cond!r}", space, NearestSpace)
            if space == "input":
                q, keys = x, train.images
            else:
                q = penultimate_features(run.model, x, train.num_classes)
                keys = penultimate_features(run.model, train.images, train.num_classes)
            groups = (pred, labels) if c.nn_same_class else (None, None)
            explanation_ids[cond] = nearest_examples(q, keys, *groups)
        else:
            raise ValueError(
                f"unknown evaluator explanation {cond!r}: none, responsibility_<sign>, nn_input, nn_feature"
            )
    return explanation_ids


def evaluator_experiment(
    cfg: DictConfig,
    run: RecordedRun,
    train: ImageClassificationDataset,
    test: ImageClassificationDataset,
    out_dir: Path,
) -> dict[str, Any]:
    """The Section 4 actor/evaluator experiment (module docstring): ``evaluator.csv`` and ``evaluator.png``.

    Pool: every misclassified test input and as many correctly classified ones (seeded draw), as in the authors'
    code. For each evaluator seed the pool is split (stratified by correctness) into train / validation / test;
    every explanation condition and target uses the same split, so the comparison is paired.
    """
    c = cfg.evaluator
    for t in c.targets:
        check_choice("evaluator.targets", t, EvaluatorTarget)
    n = len(test) if c.n_test is None else min(int(c.n_test), len(test))
    x_all, y_all = test.images[:n], test.targets[:n].numpy()
    pred_all = predict(run.model, x_all).argmax(1).numpy()
    wrong, right = np.flatnonzero(pred_all != y_all), np.flatnonzero(pred_all == y_all)
    if len(wrong) < 2 or len(right) < 2:
        raise ValueError(f"the actor is right on {len(right)} and wrong on {len(wrong)} of {n} test inputs: need 2+")
    rng = np.random.default_rng([cfg.seed, 5])
    size = min(len(wrong), len(right))
    pool = np.sort(np.concatenate([rng.choice(wrong, size, replace=False), rng.choice(right, size, replace=False)]))
    x, y, pred = x_all[pool], y_all[pool], pred_all[pool]
    correct = (pred == y).astype(np.int64)
    labels = train.targets.numpy()
    explanation_ids = _explanation_ids(cfg, run, train, x, pred)

    targets = {"correct": correct, "decision": pred.astype(np.int64)}
    num_outputs = {"correct": 2, "decision": train.num_classes}
    rows = []
    for es in (int(s) for s in c.seeds):
        split_rng = np.random.default_rng([cfg.seed, 6, es])
        fit_ids, test_ids = _stratified_split(correct, float(c.test_fraction), split_rng)
        keep, val = _stratified_split(correct[fit_ids], float(c.val_fraction), split_rng)
        train_ids, val_ids = fit_ids[keep], fit_ids[val]
        sizes = {"n_train": len(train_ids), "n_test": len(test_ids)}
        for target in c.targets:
            t = torch.as_tensor(targets[target])
            majority = int(np.bincount(targets[target][train_ids]).argmax())
            acc = float(np.mean(targets[target][test_ids] == majority))
            rows.append(_row(target, "majority class (no model)", es, acc, 0) | sizes)
            for cond in (str(v) for v in c.explanations):
                inputs = x if cond == "none" else torch.cat([x, train.images[explanation_ids[cond]]], dim=1)
                model, epochs = train_evaluator(
                    inputs[train_ids], t[train_ids], inputs[val_ids], t[val_ids], num_outputs[target], c, es
                )
                acc = float((predict(model, inputs[test_ids]).argmax(1) == t[test_ids]).float().mean())
                log.info("evaluator seed %d, target %s, %s: accuracy %.4f (%d epochs)", es, target, cond, acc, epochs)
                rows.append(_row(target, cond, es, acc, epochs) | sizes)
    write_csv(out_dir / "evaluator.csv", rows)

    summary: dict[str, dict[str, Any]] = {}
    for target in c.targets:
        summary[target] = {}
        for cond in dict.fromkeys(r["explanation"] for r in rows if r["target"] == target):
            accs = [r["accuracy"] for r in rows if r["target"] == target and r["explanation"] == cond]
            summary[target][cond] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "runs": accs}
    leak = {
        cond: {
            "label_is_predicted": fraction(labels[ids] == pred),
            "label_is_predicted_when_wrong": fraction(labels[ids][correct == 0] == pred[correct == 0]),
            "label_is_true_when_wrong": fraction(labels[ids][correct == 0] == y[correct == 0]),
        }
        for cond, ids in explanation_ids.items()
    }
    _plot_evaluator(out_dir / "evaluator.png", summary)
    return {
        "n_test": n,
        "actor_test_accuracy": float(np.mean(pred_all == y_all)),
        "pool": {"size": len(pool), "misclassified": int(size), "correct": int(size)},
        "split": {"train": len(train_ids), "validation": len(val_ids), "test": len(test_ids)},
        "accuracy": summary,
        "explanation_labels": leak,
    }


def _row(target: str, cond: str, seed: int, acc: float, epochs: int) -> dict[str, Any]:
    return {"target": target, "explanation": cond, "evaluator_seed": seed, "accuracy": acc, "epochs": epochs}


def _plot_evaluator(path: Path, summary: dict[str, dict[str, Any]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(summary), figsize=(4.6 * len(summary), 3.8), squeeze=False)
    for ax, (target, conds) in zip(axes[0], summary.items(), strict=True):
        names = list(conds)
        ax.bar(range(len(names)), [conds[n]["mean"] for n in names], yerr=[conds[n]["std"] for n in names])
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
        ax.set(title=f"evaluator target: {target}", ylabel="evaluator test accuracy", ylim=(0, 1))
    save_figure(fig, path, dpi=110)


def evaluator_markdown(r: dict[str, Any]) -> list[str]:
    """The Section 4 section of ``results.md``."""
    targets = list(r["accuracy"])
    conds = list(dict.fromkeys(cond for t in targets for cond in r["accuracy"][t]))
    lines = [
        "",
        f"## Section 4 evaluator ({r['pool']['size']} pooled test inputs: {r['pool']['misclassified']} "
        f"misclassified + as many correct; split {r['split']['train']} / {r['split']['validation']} / "
        f"{r['split']['test']})",
        "",
        "Evaluator test accuracy, mean ± std over evaluator seeds. `correct`: predict whether the actor is "
        "right; `decision`: predict the actor's class.",
        "",
    ]
    cells = {(t, cond): r["accuracy"][t].get(cond) for t in targets for cond in conds}
    lines += markdown_table(
        ["explanation", *targets],
        (
            [cond, *("-" if (a := cells[t, cond]) is None else f"{a['mean']:.3f} ± {a['std']:.3f}" for t in targets)]
            for cond in conds
        ),
    )
    lines += [
        "",
        "Labels of the explanation images (fraction of the pool; 'when wrong' = misclassified inputs only):",
        "",
    ]
    return lines + markdown_table(
        ["explanation", "label = actor's prediction", "same, when wrong", "label = true label, when wrong"],
        (
            [
                cond,
                f"{v['label_is_predicted']:.3f}",
                f"{v['label_is_predicted_when_wrong']:.3f}",
                f"{v['label_is_true_when_wrong']:.3f}",
            ]
            for cond, v in r["explanation_labels"].items()
        ),
    )
