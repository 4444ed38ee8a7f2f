"""What ``scripts/paper.py`` does with a composed Hydra config: the paper's remaining experiments on recorded runs.

Khadivpour & Guzdial (arXiv 2209.03433), on the paper CNN trained with the :class:`ResponsibilityCallback`:

- ``interclass`` (appendix A.2): the inter-class responsibility matrix of the output layer
  (:func:`responsibility.analysis.groups.interclass_matrix`: rows = training classes, columns = output units) and its
  diagonal dominance (:func:`responsibility.analysis.groups.diagonal_dominance`), raw and column-normalised, per sign.
- ``misclassified`` (A.4): the misclassified test inputs and their most responsible training examples; the
  fraction whose top-1 example carries the (wrong) predicted label, the true label, or another one.
- ``seeds`` (A.5): the same data trained with several seeds; the overlap of the top-k sets that explain the same
  test inputs (Jaccard, top-1 agreement) against two baselines: two random k-subsets, and the explanation of
  another test input with the same prediction (what a class-wide set of hub examples alone would give).
- ``evaluator`` (Section 4): a secondary "evaluator" CNN learns to predict the actor (whether its prediction is
  correct, as in the authors' released code, or the predicted class itself) from a test input alone or from
  the input stacked with one explanation image: the most responsible training example, or the nearest training
  example (in input space or in the actor's penultimate-feature space) of the predicted class.

Explanations come from :func:`responsibility.query.explain` (``cfg.explain``: layers, target = the predicted
class). ``sign`` ranks training examples by R (``abs``), R_pos, R_neg, or ``signed`` = R_pos − R_neg of the
same chosen weights: with batch size 1 that is the net change an example made to the weight, the quantity the
authors' released code takes the argmax of.

Every experiment writes CSV, PNG, and its part of ``results.json`` / ``results.md`` into ``cfg.results_dir``;
``cfg.publish`` copies them to ``cfg.docs_dir``.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Literal, get_args

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F

from responsibility.analysis.groups import diagonal_dominance, interclass_matrix
from responsibility.callbacks.responsibility import ResponsibilityCallback
from responsibility.choices import Sign, check_choice
from responsibility.evaluation import (
    expected_random_jaccard,
    shuffled_jaccard,
    top1_agreement,
    topk_jaccard,
)
from responsibility.experiments.datasets import ImageClassificationDataset
from responsibility.experiments.evaluate import predict
from responsibility.experiments.reporting import Clock, publish, pyplot, write_csv
from responsibility.experiments.trainers import quiet_trainer
from responsibility.query import explain, final_layer
from responsibility.report.pictures import interclass_heatmap
from responsibility.store import ResponsibilityStore

__all__ = [
    "EXPERIMENTS",
    "EXPLAIN_SIGNS",
    "EvaluatorCNN",
    "RecordedRun",
    "evaluator_experiment",
    "interclass_experiment",
    "misclassified_experiment",
    "nearest_examples",
    "penultimate_features",
    "responsible_examples",
    "run_paper",
    "seeds_experiment",
    "train_evaluator",
    "train_recorded",
]

EXPERIMENTS = ("interclass", "misclassified", "seeds", "evaluator")
ExplainSign = Literal["abs", "pos", "neg", "signed"]
EvaluatorTarget = Literal["correct", "decision"]
NearestSpace = Literal["input", "feature"]
EXPLAIN_SIGNS: tuple[ExplainSign, ...] = get_args(ExplainSign)
_QUERY_SIGN = {"signed": "net"}
PUBLISHED_SUFFIXES = (".json", ".csv", ".md", ".png")
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ recorded training
@dataclass
class RecordedRun:
    """One training run of ``cfg.model`` with the responsibility callback: the model and its store."""

    seed: int
    model: L.LightningModule
    store: ResponsibilityStore
    test_accuracy: float
    wall_s: float


def _callback_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.responsibility, resolve=True)
    if cfg.attribution != "uniform":  # passed only when asked for, as in responsibility.experiments.evaluate
        kwargs["attribution"] = cfg.attribution
    return kwargs


def train_recorded(cfg: DictConfig, datamodule: L.LightningDataModule, seed: int, run_dir: Path) -> RecordedRun:
    """Train a fresh ``cfg.model`` seeded with ``seed`` on ``datamodule``'s training set (the data do not depend
    on ``seed``), recording ``cfg.responsibility`` into ``run_dir/responsibility.zarr``."""
    start = time.perf_counter()
    L.seed_everything(seed, verbose=False)  # initial weights and the shuffling order
    model = instantiate(cfg.model)
    store_path = Path(run_dir) / "responsibility.zarr"
    callback = ResponsibilityCallback(store_path, overwrite=True, **_callback_kwargs(cfg))
    quiet_trainer(cfg.max_epochs, [callback]).fit(model, train_dataloaders=datamodule.train_dataloader())
    test = datamodule.test_set
    accuracy = float((predict(model, test.images).argmax(1) == test.targets).float().mean())
    wall = time.perf_counter() - start
    log.info("trained seed %d in %.1f s: test accuracy %.4f, store %s", seed, wall, accuracy, store_path)
    return RecordedRun(seed, model, ResponsibilityStore.open(store_path), accuracy, wall)


# --------------------------------------------------------------------------------------------- explanations
def responsible_examples(
    model: nn.Module,
    store: ResponsibilityStore,
    x: torch.Tensor,
    *,
    k: int,
    layers: Sequence[str] | None,
    sign: str = "abs",
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(predicted (n,), example ids (n, k), scores (n, k))`` of the most responsible training examples.

    The weights are chosen by :func:`responsibility.query.explain` (the predicted class's row of the final
    layer); ``sign`` is ``abs``, ``pos``, ``neg`` (passed to ``explain``) or ``signed``: R_pos − R_neg of the
    chosen weights, ranked high to low, ties to the smaller id.
    """
    check_choice("sign", sign, ExplainSign)
    if not 1 <= k <= store.num_examples:
        raise ValueError(f"k must be in [1, {store.num_examples}], got {k}")
    layers = None if layers is None else [str(v) for v in layers]
    predicted, ids, scores = [], [], []
    for i in range(0, len(x), chunk):
        xc = x[i : i + chunk]
        # The paper's rule; "signed" ranks by R_pos - R_neg of the chosen weights.
        ex = explain(model, store, xc, k=k, layers=layers, method="most_activated", sign=_QUERY_SIGN.get(sign, sign))
        predicted.append(ex.predicted)
        ids.append(ex.example_ids)
        scores.append(ex.scores)
    return np.concatenate(predicted), np.concatenate(ids).astype(np.int64), np.concatenate(scores)


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, num_classes: int, batch_size: int = 1024) -> torch.Tensor:
    """The input of the model's final layer (the last ``nn.Linear`` with ``num_classes`` outputs), ``(n, d)``."""
    layer = final_layer(model, num_classes)
    if layer is None:
        raise ValueError(f"the model has no final nn.Linear with {num_classes} outputs")
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _mod, args: captured.append(args[0].detach().flatten(1)))
    try:
        predict(model, x, batch_size)
    finally:
        handle.remove()
    return torch.cat(captured)


def nearest_examples(
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_groups: np.ndarray | None = None,
    key_groups: np.ndarray | None = None,
    chunk: int = 1024,
) -> np.ndarray:
    """For each query row, the index of the nearest key row (Euclidean; ties to the smaller index), ``(n,)``.

    With groups, only keys of the query's own group are candidates (e.g. training examples whose label is the
    actor's predicted class); a query whose group has no key is an error.
    """
    q, kx = queries.flatten(1).double(), keys.flatten(1).double()
    if q.shape[1] != kx.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features, keys {kx.shape[1]}")
    if (query_groups is None) != (key_groups is None):
        raise ValueError("pass both query_groups and key_groups, or neither")
    key_sq = (kx * kx).sum(1)
    out = np.empty(len(q), dtype=np.int64)
    kg = None if key_groups is None else torch.as_tensor(np.asarray(key_groups))
    for i in range(0, len(q), chunk):
        qc = q[i : i + chunk]
        d = key_sq[None, :] - 2 * qc @ kx.T  # |q|² is constant per row: it does not change the argmin
        if kg is not None:
            qg = torch.as_tensor(np.asarray(query_groups)[i : i + chunk])
            allowed = qg[:, None] == kg[None, :]
            if not bool(allowed.any(1).all()):
                raise ValueError("a query's group has no key to be its neighbour")
            d = torch.where(allowed, d, torch.full_like(d, float("inf")))
        out[i : i + chunk] = d.argmin(1).numpy()  # argmin returns the first minimum: the smaller index
    return out


# ----------------------------------------------------------------------------------------------- A.2
def interclass_experiment(cfg: DictConfig, run: RecordedRun, train: ImageClassificationDataset, out_dir: Path) -> dict:
    """Inter-class responsibility of ``cfg.interclass.parameter`` for each sign; ``interclass.csv`` and
    ``interclass.png`` (column-normalised matrix of the first sign)."""
    c = cfg.interclass
    name = str(c.parameter)
    if name not in run.store.parameters:
        raise ValueError(f"interclass.parameter {name} is not recorded; the store has {run.store.parameters}")
    classes = train.num_classes
    out: dict[str, Any] = {"parameter": name, "signs": {}}
    rows = []
    for sign in c.signs:
        check_choice("interclass.signs", sign, Sign)
        raw = interclass_matrix(run.store, name, sign=sign, num_classes=classes)
        share = interclass_matrix(run.store, name, sign=sign, num_classes=classes, normalize=True)
        if raw.shape != (classes, classes):
            raise ValueError(f"{name} has {raw.shape[1]} output units, not one per class ({classes})")
        out["signs"][sign] = {
            "diagonal_dominance": diagonal_dominance(raw),
            "diagonal_dominance_normalized": diagonal_dominance(share),
            "units_led_by_own_class": int((share.argmax(0) == np.arange(classes)).sum()),
            "own_class_share": np.diag(share).round(6).tolist(),
            "matrix": raw.tolist(),
            "normalized": share.tolist(),
        }
        rows += [
            {"sign": sign, "training_class": r, "output_unit": u, "r_sum": raw[r, u], "column_share": share[r, u]}
            for r in range(classes)
            for u in range(classes)
        ]
    out["classes"] = classes
    write_csv(out_dir / "interclass.csv", rows)
    first = str(c.signs[0])
    interclass_heatmap(np.asarray(out["signs"][first]["normalized"]), train.class_names, out_dir / "interclass.png")
    return out


# ----------------------------------------------------------------------------------------------- A.4
def misclassified_experiment(
    cfg: DictConfig,
    run: RecordedRun,
    train: ImageClassificationDataset,
    test: ImageClassificationDataset,
    out_dir: Path,
) -> dict:
    """Misclassified test inputs with their top-k responsible examples for each sign of ``cfg.explain.signs``:
    ``misclassified.csv``, ``misclassified_<sign>.png`` and label fractions of the top-1 examples."""
    c, e = cfg.misclassified, cfg.explain
    n = len(test) if c.n_test is None else min(int(c.n_test), len(test))
    x, y = test.images[:n], test.targets[:n].numpy()
    labels = train.targets.numpy()
    names = train.class_names
    out: dict[str, Any] = {"n_test": n, "k": int(c.k), "signs": {}}
    rows = []
    for sign in e.signs:
        pred, ids, scores = responsible_examples(run.model, run.store, x, k=int(c.k), layers=e.layers, sign=sign)
        wrong = np.flatnonzero(pred != y)
        right = np.flatnonzero(pred == y)
        top1 = labels[ids[:, 0]]
        stats = {
            "misclassified": len(wrong),
            "test_accuracy": float(np.mean(pred == y)),
            "top1_label_is_predicted": _fraction(top1[wrong] == pred[wrong]),
            "top1_label_is_true": _fraction(top1[wrong] == y[wrong]),
            "top1_label_is_other": _fraction((top1[wrong] != pred[wrong]) & (top1[wrong] != y[wrong])),
            "topk_labels_predicted_share": _fraction(labels[ids[wrong]] == pred[wrong, None]),
            "topk_labels_true_share": _fraction(labels[ids[wrong]] == y[wrong, None]),
            "correct_inputs_top1_label_is_predicted": _fraction(top1[right] == pred[right]),
        }
        out["signs"][sign] = stats
        for i in wrong:
            row: dict[str, Any] = {
                "sign": sign,
                "test_id": int(i),
                "test_source_index": int(test.source_indices[i]),
                "true_label": int(y[i]),
                "true_name": names[y[i]],
                "predicted_label": int(pred[i]),
                "predicted_name": names[pred[i]],
            }
            for r in range(int(c.k)):
                row[f"top{r + 1}_id"] = int(ids[i, r])
                row[f"top{r + 1}_label"] = int(labels[ids[i, r]])
                row[f"top{r + 1}_score"] = float(scores[i, r])
            rows.append(row)
        shown = wrong[: int(c.grid_rows)]
        _explanation_grid(
            [
                (
                    test.images[i],
                    f"test {i}\ntrue: {names[y[i]]}\npred: {names[pred[i]]}",
                    [(train.images[m], f"#{m} {names[labels[m]]}") for m in ids[i]],
                )
                for i in shown
            ],
            out_dir / f"misclassified_{sign}.png",
            f"Misclassified test inputs and their {int(c.k)} most responsible training examples (sign {sign})",
        )
    write_csv(out_dir / "misclassified.csv", rows)
    return out


# ----------------------------------------------------------------------------------------------- A.5
def seeds_experiment(
    cfg: DictConfig,
    runs: dict[int, RecordedRun],
    train: ImageClassificationDataset,
    test: ImageClassificationDataset,
    out_dir: Path,
) -> dict:
    """Overlap of the explanations of the same test inputs by models trained with different seeds on the same
    data: ``seeds_overlap.csv``, ``seeds_topk.csv``, ``seeds_overlap.png``."""
    c, e = cfg.seeds, cfg.explain
    seeds = [int(s) for s in c.seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds.seeds must list at least two distinct seeds, got {seeds}")
    ks = sorted({int(k) for k in c.ks})
    k_max = ks[-1]
    n_train = len(train)
    if ks[0] < 1 or k_max > n_train:
        raise ValueError(f"seeds.ks must lie in [1, {n_train}], got {ks}")
    n = len(test) if c.n_test is None else min(int(c.n_test), len(test))
    x, y = test.images[:n], test.targets[:n].numpy()
    out: dict[str, Any] = {
        "seeds": seeds,
        "n_test": n,
        "ks": ks,
        "test_accuracy": {str(s): runs[s].test_accuracy for s in seeds},
        "chance_jaccard": {str(k): expected_random_jaccard(n_train, k) for k in ks},
        "chance_top1_agreement": 1.0 / n_train,
        "signs": {},
    }
    rows, top_rows = [], []
    for sign in e.signs:
        pred, ids = {}, {}
        for s in seeds:
            pred[s], ids[s], _ = responsible_examples(
                runs[s].model, runs[s].store, x, k=k_max, layers=e.layers, sign=sign
            )
            top_rows += [
                {"sign": sign, "seed": s, "test_id": i, "true_label": int(y[i]), "predicted_label": int(pred[s][i])}
                | {"example_ids": ";".join(map(str, ids[s][i]))}
                for i in range(n)
            ]
        pairs = []
        for a, b in combinations(seeds, 2):
            same = pred[a] == pred[b]
            pair: dict[str, Any] = {
                "seed_a": a,
                "seed_b": b,
                "prediction_agreement": float(np.mean(same)),
                "top1_agreement": top1_agreement(ids[a], ids[b]),
            }
            for k in ks:
                jac = topk_jaccard(ids[a][:, :k], ids[b][:, :k])
                base = shuffled_jaccard(ids[a][:, :k], ids[b][:, :k], pred[a], seed=cfg.seed)
                pair[f"jaccard@{k}"] = float(jac.mean())
                pair[f"jaccard@{k}_same_prediction"] = _fraction_mean(jac[same])
                pair[f"shuffled_jaccard@{k}"] = base
                rows.append(
                    {
                        "sign": sign,
                        "seed_a": a,
                        "seed_b": b,
                        "k": k,
                        "mean_jaccard": pair[f"jaccard@{k}"],
                        "mean_jaccard_same_prediction": pair[f"jaccard@{k}_same_prediction"],
                        "shuffled_input_jaccard": base,
                        "chance_jaccard": out["chance_jaccard"][str(k)],
                        "top1_agreement": pair["top1_agreement"],
                        "prediction_agreement": pair["prediction_agreement"],
                    }
                )
            pairs.append(pair)
        mean = {key: float(np.mean([p[key] for p in pairs])) for key in pairs[0] if key not in ("seed_a", "seed_b")}
        out["signs"][sign] = {"pairs": pairs, "mean_over_pairs": mean}
    write_csv(out_dir / "seeds_overlap.csv", rows)
    write_csv(out_dir / "seeds_topk.csv", top_rows)
    _plot_seed_overlap(out_dir / "seeds_overlap.png", out, k_max)
    return out


# ------------------------------------------------------------------------------------------ Section 4
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


def evaluator_experiment(
    cfg: DictConfig,
    run: RecordedRun,
    train: ImageClassificationDataset,
    test: ImageClassificationDataset,
    out_dir: Path,
) -> dict:
    """The Section 4 actor/evaluator experiment (module docstring): ``evaluator.csv`` and ``evaluator.png``.

    Pool: every misclassified test input and as many correctly classified ones (seeded draw), as in the authors'
    code. For each evaluator seed the pool is split (stratified by correctness) into train / validation / test;
    every explanation condition and target uses the same split, so the comparison is paired.
    """
    c, e = cfg.evaluator, cfg.explain
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

    explanation_ids: dict[str, np.ndarray] = {}
    for cond in c.explanations:
        cond = str(cond)
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

    targets = {"correct": correct, "decision": pred.astype(np.int64)}
    num_outputs = {"correct": 2, "decision": train.num_classes}
    rows = []
    for es in c.seeds:
        es = int(es)
        split_rng = np.random.default_rng([cfg.seed, 6, es])
        fit_ids, test_ids = _stratified_split(correct, float(c.test_fraction), split_rng)
        keep, val = _stratified_split(correct[fit_ids], float(c.val_fraction), split_rng)
        train_ids, val_ids = fit_ids[keep], fit_ids[val]
        for target in c.targets:
            t = torch.as_tensor(targets[target])
            majority = int(np.bincount(targets[target][train_ids]).argmax())
            rows.append(
                _evaluator_row(
                    target,
                    "majority class (no model)",
                    es,
                    float(np.mean(targets[target][test_ids] == majority)),
                    0,
                    train_ids,
                    test_ids,
                )
            )
            for cond in c.explanations:
                cond = str(cond)
                inputs = x if cond == "none" else torch.cat([x, train.images[explanation_ids[cond]]], dim=1)
                model, epochs = train_evaluator(
                    inputs[train_ids], t[train_ids], inputs[val_ids], t[val_ids], num_outputs[target], c, es
                )
                acc = float((predict(model, inputs[test_ids]).argmax(1) == t[test_ids]).float().mean())
                log.info("evaluator seed %d, target %s, %s: accuracy %.4f (%d epochs)", es, target, cond, acc, epochs)
                rows.append(_evaluator_row(target, cond, es, acc, epochs, train_ids, test_ids))
    write_csv(out_dir / "evaluator.csv", rows)

    summary: dict[str, dict[str, Any]] = {}
    for target in c.targets:
        summary[target] = {}
        for cond in dict.fromkeys(r["explanation"] for r in rows if r["target"] == target):
            accs = [r["accuracy"] for r in rows if r["target"] == target and r["explanation"] == cond]
            summary[target][cond] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "runs": accs}
    leak = {
        cond: {
            "label_is_predicted": _fraction(labels[ids] == pred),
            "label_is_predicted_when_wrong": _fraction(labels[ids][correct == 0] == pred[correct == 0]),
            "label_is_true_when_wrong": _fraction(labels[ids][correct == 0] == y[correct == 0]),
        }
        for cond, ids in explanation_ids.items()
    }
    out = {
        "n_test": n,
        "actor_test_accuracy": float(np.mean(pred_all == y_all)),
        "pool": {"size": len(pool), "misclassified": int(size), "correct": int(size)},
        "split": {"train": len(train_ids), "validation": len(val_ids), "test": len(test_ids)},
        "accuracy": summary,
        "explanation_labels": leak,
    }
    _plot_evaluator(out_dir / "evaluator.png", summary)
    return out


def _evaluator_row(
    target: str, cond: str, seed: int, acc: float, epochs: int, train_ids: np.ndarray, test_ids: np.ndarray
) -> dict[str, Any]:
    return {
        "target": target,
        "explanation": cond,
        "evaluator_seed": seed,
        "accuracy": acc,
        "epochs": epochs,
        "n_train": len(train_ids),
        "n_test": len(test_ids),
    }


# ------------------------------------------------------------------------------------------------- outputs
def _fraction(mask: np.ndarray) -> float:
    mask = np.asarray(mask)
    return float(mask.mean()) if mask.size else float("nan")


def _fraction_mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _explanation_grid(
    rows: list[tuple[torch.Tensor, str, list[tuple[torch.Tensor, str]]]], path: Path, title: str
) -> None:
    """One row per test input: its image and title, then its explanation images with their titles."""
    plt = pyplot()
    cols = 1 + max((len(r[2]) for r in rows), default=1)
    fig, axes = plt.subplots(
        max(len(rows), 1), cols, figsize=(1.5 * cols, 1.75 * max(len(rows), 1) + 0.4), squeeze=False
    )
    for r, (image, label, examples) in enumerate(rows):
        axes[r, 0].imshow(image[0].numpy(), cmap="gray")
        axes[r, 0].set_title(label, fontsize=6, color="darkred")
        for j, (ex_image, ex_label) in enumerate(examples, start=1):
            axes[r, j].imshow(ex_image[0].numpy(), cmap="gray")
            axes[r, j].set_title(ex_label, fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_seed_overlap(path: Path, seeds: dict[str, Any], k: int) -> None:
    plt = pyplot()
    signs = list(seeds["signs"])
    fig, axes = plt.subplots(1, len(signs), figsize=(4.2 * len(signs), 3.6), squeeze=False)
    for ax, sign in zip(axes[0], signs, strict=True):
        pairs = seeds["signs"][sign]["pairs"]
        names = [f"{p['seed_a']} vs {p['seed_b']}" for p in pairs]
        pos = np.arange(len(pairs))
        ax.bar(pos - 0.2, [p[f"jaccard@{k}"] for p in pairs], 0.2, label=f"Jaccard@{k}")
        ax.bar(pos, [p[f"shuffled_jaccard@{k}"] for p in pairs], 0.2, label="other input, same prediction")
        ax.bar(pos + 0.2, [p["top1_agreement"] for p in pairs], 0.2, label="top-1 agreement")
        ax.axhline(seeds["chance_jaccard"][str(k)], color="grey", ls=":", label=f"random sets (Jaccard@{k})")
        ax.set_xticks(pos, names, fontsize=7)
        top = max([p[f"jaccard@{k}"] for p in pairs] + [p["top1_agreement"] for p in pairs] + [0.04])
        ax.set(title=f"sign {sign}", ylabel="overlap", ylim=(0, min(1.0, 1.3 * top)))
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_evaluator(path: Path, summary: dict[str, dict[str, Any]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(summary), figsize=(4.6 * len(summary), 3.8), squeeze=False)
    for ax, (target, conds) in zip(axes[0], summary.items(), strict=True):
        names = list(conds)
        ax.bar(range(len(names)), [conds[n]["mean"] for n in names], yerr=[conds[n]["std"] for n in names])
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
        ax.set(title=f"evaluator target: {target}", ylabel="evaluator test accuracy", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(results: dict[str, Any]) -> str:
    s = results["setup"]
    lines = [
        f"# {results['experiment']}",
        "",
        f"`{results['command']}`",
        "",
        f"{s['data']}: {s['train_examples']} training examples ({s['classes']} classes, data seed {s['data_seed']}), "
        f"{s['test_examples']} test examples; {s['model']}, {s['optimizer']} lr {s['lr']} momentum {s['momentum']}, "
        f"batch {s['batch_size']}, {s['epochs']} epochs ({s['steps']} steps), attribution `{s['attribution']}`, "
        f"recorded {s['tracked']}. Test accuracy by training seed: "
        + ", ".join(f"{k}: {v:.4f}" for k, v in s["test_accuracy"].items())
        + ". Wall times (s): "
        + ", ".join(f"{k} {v}" for k, v in results["wall_s"].items())
        + ".",
    ]
    if "interclass" in results:
        r = results["interclass"]
        lines += [
            "",
            f"## A.2 inter-class responsibility of `{r['parameter']}`",
            "",
            "Diagonal dominance = mean diagonal / mean off-diagonal entry (1 = no class structure); "
            "normalised = each output unit's column divided by its sum.",
            "",
            "| sign | diagonal dominance (raw) | diagonal dominance (normalised) | "
            "units whose largest share is their own class |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {sign} | {v['diagonal_dominance']:.3f} | {v['diagonal_dominance_normalized']:.3f} | "
            f"{v['units_led_by_own_class']} / {r['classes']} |"
            for sign, v in r["signs"].items()
        ]
    if "misclassified" in results:
        r = results["misclassified"]
        lines += [
            "",
            f"## A.4 misclassified test inputs ({r['n_test']} test inputs explained, k = {r['k']})",
            "",
            "Labels of the most responsible (top-1) training example of each misclassified input; the top-k "
            "columns give the share of all k examples; the last column is the same top-1 check on the correctly "
            "classified inputs.",
            "",
            "| sign | misclassified | top-1 = predicted (wrong) label | top-1 = true label | top-1 = other | "
            "top-k = predicted | top-k = true | correct inputs: top-1 = predicted |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {sign} | {v['misclassified']} | {v['top1_label_is_predicted']:.3f} | {v['top1_label_is_true']:.3f} | "
            f"{v['top1_label_is_other']:.3f} | {v['topk_labels_predicted_share']:.3f} | "
            f"{v['topk_labels_true_share']:.3f} | {v['correct_inputs_top1_label_is_predicted']:.3f} |"
            for sign, v in r["signs"].items()
        ]
    if "seeds" in results:
        r = results["seeds"]
        ks = r["ks"]
        lines += [
            "",
            f"## A.5 seeds {r['seeds']}: overlap of the most responsible sets ({r['n_test']} test inputs)",
            "",
            "Means over the seed pairs. Jaccard@k: of the two top-k sets of the same test input; shuffled: of "
            "one seed's set for an input and the other seed's set for another input with the same prediction; "
            "random: two uniformly drawn k-subsets (exact expectation).",
            "",
            "| sign | prediction agreement | top-1 agreement | "
            + " | ".join(f"Jaccard@{k} | shuffled@{k} | random@{k}" for k in ks)
            + " |",
            "| --- | --- | --- |" + " --- | --- | --- |" * len(ks),
        ]
        for sign, v in r["signs"].items():
            m = v["mean_over_pairs"]
            lines.append(
                f"| {sign} | {m['prediction_agreement']:.3f} | {m['top1_agreement']:.3f} | "
                + " | ".join(
                    f"{m[f'jaccard@{k}']:.3f} | {m[f'shuffled_jaccard@{k}']:.3f} | {r['chance_jaccard'][str(k)]:.4f}"
                    for k in ks
                )
                + " |"
            )
    if "evaluator" in results:
        r = results["evaluator"]
        targets = list(r["accuracy"])
        conds = list(dict.fromkeys(cond for t in targets for cond in r["accuracy"][t]))
        lines += [
            "",
            f"## Section 4 evaluator ({r['pool']['size']} pooled test inputs: {r['pool']['misclassified']} "
            f"misclassified + as many correct; split {r['split']['train']} / {r['split']['validation']} / "
            f"{r['split']['test']})",
            "",
            "Evaluator test accuracy, mean ± std over evaluator seeds. `correct`: predict whether the actor is "
            "right; `decision`: predict the actor's class.",
            "",
            "| explanation | " + " | ".join(targets) + " |",
            "| --- |" + " --- |" * len(targets),
        ]
        for cond in conds:
            cells = []
            for t in targets:
                a = r["accuracy"][t].get(cond)
                cells.append("-" if a is None else f"{a['mean']:.3f} ± {a['std']:.3f}")
            lines.append(f"| {cond} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Labels of the explanation images (fraction of the pool; 'when wrong' = misclassified inputs only):",
            "",
            "| explanation | label = actor's prediction | same, when wrong | label = true label, when wrong |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {cond} | {v['label_is_predicted']:.3f} | {v['label_is_predicted_when_wrong']:.3f} | "
            f"{v['label_is_true_when_wrong']:.3f} |"
            for cond, v in r["explanation_labels"].items()
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- main
def run_paper(cfg: DictConfig, command: str = "") -> dict[str, Any]:
    """Run the experiments listed in ``cfg.experiments`` (see the module docstring); returns ``results.json``.

    ``cfg.num_threads`` (if set) is torch's intra-op thread count for the duration of the call.
    """
    threads = torch.get_num_threads()
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    try:
        return _run_paper(cfg, command)
    finally:
        torch.set_num_threads(threads)


def _run_paper(cfg: DictConfig, command: str) -> dict[str, Any]:
    experiments = [str(v) for v in cfg.experiments]
    unknown = sorted(set(experiments) - set(EXPERIMENTS))
    if unknown or not experiments:
        raise ValueError(f"experiments must be a non-empty list among {EXPERIMENTS}, got {experiments}")
    for sign in cfg.explain.signs:
        check_choice("explain.signs", sign, ExplainSign)
    clock = Clock()
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    train, test = datamodule.train_set, datamodule.test_set
    out_dir = Path(cfg.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    runs: dict[int, RecordedRun] = {}

    def recorded(seed: int) -> RecordedRun:
        if seed not in runs:
            runs[seed] = train_recorded(cfg, datamodule, seed, out_dir / "runs" / f"seed{seed}")
            clock.lap(f"train_seed{seed}")
        return runs[seed]

    parts: dict[str, Any] = {}
    for name in experiments:
        if name == "seeds":
            seed_runs = {int(s): recorded(int(s)) for s in cfg.seeds.seeds}
            parts["seeds"] = seeds_experiment(cfg, seed_runs, train, test, out_dir)
        elif name == "interclass":
            parts["interclass"] = interclass_experiment(cfg, recorded(int(cfg.seed)), train, out_dir)
        elif name == "misclassified":
            parts["misclassified"] = misclassified_experiment(cfg, recorded(int(cfg.seed)), train, test, out_dir)
        else:
            parts["evaluator"] = evaluator_experiment(cfg, recorded(int(cfg.seed)), train, test, out_dir)
        clock.lap(name)
    any_run = next(iter(runs.values()))
    results: dict[str, Any] = {"experiment": cfg.task_name, "command": command}
    results["setup"] = {
        "data": cfg.data._target_.rsplit(".", 1)[-1].removesuffix("DataModule"),
        "train_examples": len(train),
        "test_examples": len(test),
        "classes": train.num_classes,
        "class_names": train.class_names,
        "data_seed": int(cfg.data.seed),
        "model": cfg.model.net._target_.rsplit(".", 1)[-1],
        "optimizer": cfg.model.optimizer,
        "lr": cfg.model.lr,
        "momentum": cfg.model.momentum,
        "batch_size": cfg.data.batch_size,
        "epochs": cfg.max_epochs,
        "steps": any_run.store.steps,
        "attribution": cfg.attribution,
        "tracked": {p: any_run.store.param(p).granularity for p in any_run.store.parameters},
        "explain": OmegaConf.to_container(cfg.explain, resolve=True),
        "test_accuracy": {str(s): r.test_accuracy for s, r in sorted(runs.items())},
        "train_wall_s": {str(s): round(r.wall_s, 2) for s, r in sorted(runs.items())},
        "torch_threads": torch.get_num_threads(),
    }
    results |= parts
    results["wall_s"] = clock.totals()
    results["config"] = OmegaConf.to_container(cfg, resolve=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(_markdown(results))
    if cfg.publish:
        publish(out_dir, cfg.docs_dir, sorted(p.name for p in out_dir.iterdir() if p.suffix in PUBLISHED_SUFFIXES))
    return results
