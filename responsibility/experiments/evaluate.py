"""What ``scripts/evaluate.py`` does with a composed Hydra config: one recorded run, every score on it, metrics.

1. Train ``cfg.model`` on ``cfg.data`` with the :class:`ResponsibilityCallback` (``cfg.responsibility``,
   ``cfg.attribution``) and a :class:`MarginCallback` (epoch margins and checkpoints) on the same run.
2. Rank the training examples for mislabel inspection by the responsibility scores of ``cfg.scores``
   (:mod:`responsibility.analysis.scores`) and by the peers of ``cfg.peers``
   (:mod:`responsibility.evaluation.peers`): final loss,
   AUM, last-layer TracIn self-influence, cleanlab's label quality from cross-validated probabilities (the only
   peer that trains extra models: one per fold). Metrics: recall of flipped labels at 10% / 20% inspected and
   the area under the detection curve / N.
3. Optionally: sanity metrics of test explanations (``cfg.sanity``), LDS over models retrained on random
   subsets (``cfg.lds``) and the paper's Figure 4 loop (``cfg.fix_labels``: fix the labels of the first
   fraction of a ranking, retrain, test accuracy).
4. Write ``results.json``, ``mislabel.csv``, ``results.md``, ``detection.png`` (and ``fix_labels.png``) into
   ``cfg.results_dir``, copies into ``cfg.docs_dir`` when ``cfg.publish``, and ``scores.npz`` (every ranking).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from responsibility.analysis.scores import class_agreement, label_push, self_responsibility
from responsibility.callbacks.margins import MarginCallback
from responsibility.callbacks.responsibility import ResponsibilityCallback
from responsibility.choices import check_choice
from responsibility.evaluation import (
    class_detection,
    detection_curve,
    linear_datamodeling_score,
    mislabel_auc,
    model_randomization,
    recall_at,
    topk_cardinality,
)
from responsibility.evaluation.peers import (
    LastLayerState,
    aum,
    cleanlab_label_quality,
    cross_validated_probabilities,
    final_loss,
    last_layer_state,
    tracin_influence,
    tracin_self_influence,
)
from responsibility.experiments.reporting import Clock, publish, pyplot, run_setup, write_csv
from responsibility.experiments.trainers import quiet_trainer
from responsibility.query import QueryOptions, attribute, final_layer
from responsibility.store import ResponsibilityStore

__all__ = ["evaluate", "fit_fresh", "predict"]

SCORE_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "self_responsibility": self_responsibility,
    "class_agreement": class_agreement,
    "label_push": label_push,
}
PUBLISHED = ("results.json", "mislabel.csv", "results.md", "detection.png", "fix_labels.png")


# ------------------------------------------------------------------------------------------- training helpers
def fit_fresh(
    cfg: DictConfig, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, seed: int
) -> L.LightningModule:
    """A fresh ``cfg.model`` (seeded), trained on ``(x, y)`` without any recording callback."""
    L.seed_everything(seed, verbose=False)
    model = instantiate(cfg.model)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    quiet_trainer(epochs).fit(model, train_dataloaders=loader)
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


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x).argmax(1) == y).float().mean())


def _callback_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.responsibility, resolve=True)
    if cfg.attribution != "uniform":  # passed only when asked for, so older callbacks keep working
        kwargs["attribution"] = cfg.attribution
    return kwargs


# ------------------------------------------------------------------------------------------------ the scores
def responsibility_scores(store: ResponsibilityStore, scores_cfg: DictConfig) -> dict[str, np.ndarray]:
    """Suspicion scores (higher = inspect first) from the store, one per entry of ``cfg.scores``."""
    out = {}
    tracked = set(store.parameters)
    for name, entry in scores_cfg.items():
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


Checkpoints = list[tuple[dict[str, torch.Tensor], float]]


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


# ------------------------------------------------------------------------------------ explanations of test inputs
def _topk(attributions: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-attributions, axis=1, kind="stable")[:, :k]


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
        top = _topk(att, k)
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
    for name, order in orders.items():
        curve = []
        for f in fractions:
            checked = torch.as_tensor(order[: round(f * len(x))])
            labels = y.clone()
            labels[checked] = y_clean[checked]
            key = labels.numpy().tobytes()
            if key not in trained:
                m = fit_fresh(cfg, x, labels, c.epochs, c.batch_size, cfg.seed)
                trained[key] = _accuracy(m, x_test, y_test)
            curve.append(trained[key])
        curves[name] = curve
    return {"fractions": fractions.round(4).tolist(), "accuracy": curves, "retrained_models": len(trained)}


# ---------------------------------------------------------------------------------------------------- outputs
def _mislabel_rows(rankings: dict[str, tuple[str, np.ndarray]], flipped: np.ndarray) -> list[dict[str, Any]]:
    return [
        {
            "score": name,
            "kind": kind,
            "recall@10%": recall_at(s, flipped, 0.1),
            "recall@20%": recall_at(s, flipped, 0.2),
            "auc": mislabel_auc(s, flipped),
        }
        for name, (kind, s) in rankings.items()
    ]


def _plot_detection(path: Path, rankings: dict[str, tuple[str, np.ndarray]], flipped: np.ndarray, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    styles = {"responsibility": "-", "peer": "--", "baseline": ":"}
    for name, (kind, s) in rankings.items():
        curve = detection_curve(s, flipped)
        ax.plot(np.arange(1, len(curve) + 1) / len(curve), curve, styles[kind], label=name)
    for f in (0.1, 0.2):
        ax.axvline(f, color="grey", lw=0.5)
    ax.set(xlabel="fraction of training data inspected", ylabel="fraction of flipped labels found", title=title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_fix_labels(path: Path, fix: dict[str, Any], title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name, acc in fix["accuracy"].items():
        ax.plot(fix["fractions"], acc, marker="o", label=name)
    ax.set(xlabel="fraction of training data checked (labels fixed)", ylabel="test accuracy", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(results: dict[str, Any]) -> str:
    s = results["setup"]
    lines = [
        f"# {results['experiment']}: {results['run']}",
        "",
        f"`{results['command']}`",
        "",
        f"{s['train_examples']} training examples ({s['classes']} classes), {s['flipped']} labels flipped; "
        f"{s['model']}, {s['optimizer']} lr {s['lr']}, batch {s['batch_size']}, {s['epochs']} epochs "
        f"({s['steps']} steps), attribution `{s['attribution']}`. Wall times (s): "
        + ", ".join(f"{k} {v}" for k, v in results["wall_s"].items())
        + ".",
        "",
        "## Finding flipped labels",
        "",
        "Recall of flipped labels after inspecting 10% / 20% of the training data, and the area under the "
        "detection curve / N (random ≈ 0.5).",
        "",
        "| score | kind | recall@10% | recall@20% | AUC/N |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['score']} | {r['kind']} | {r['recall@10%']:.2f} | {r['recall@20%']:.2f} | {r['auc']:.3f} |"
        for r in results["mislabel"]
    ]
    if results.get("sanity"):
        lines += [
            "",
            f"## Explanations of {results['sanity_setup']['n_test']} test inputs "
            f"(layers {results['sanity_setup']['layers']}, k = {results['sanity_setup']['k']})",
            "",
            "| attribution | class detection | model randomization (Spearman, lower is better) | top-k cardinality |"
            + (" LDS |" if results.get("lds") else ""),
            "| --- | --- | --- | --- |" + (" --- |" if results.get("lds") else ""),
        ]
        for name, m in results["sanity"].items():
            lds = f" {results['lds'][name]:.3f} |" if results.get("lds") else ""
            lines.append(
                f"| {name} | {m['class_detection']:.3f} | {m['model_randomization']:.3f} | "
                f"{m['topk_cardinality']:.3f} |" + lds
            )
    if results.get("fix_labels"):
        fix = results["fix_labels"]
        names = list(fix["accuracy"])
        lines += [
            "",
            f"## Fixing labels in ranked order, retraining ({fix['retrained_models']} models; test accuracy)",
            "",
            "| fraction checked | " + " | ".join(names) + " |",
            "| --- |" + " --- |" * len(names),
        ]
        for i, f in enumerate(fix["fractions"]):
            lines.append(f"| {f:.1f} | " + " | ".join(f"{fix['accuracy'][n][i]:.4f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, results: dict[str, Any], rankings: dict[str, tuple[str, np.ndarray]]) -> None:
    """results.json, mislabel.csv, results.md, detection.png (+ fix_labels.png) and scores.npz in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    write_csv(out_dir / "mislabel.csv", results["mislabel"])
    (out_dir / "results.md").write_text(_markdown(results))
    title = f"{results['experiment']} {results['run']}"
    _plot_detection(out_dir / "detection.png", rankings, np.asarray(results["flipped_ids"]), title)
    if results.get("fix_labels"):
        _plot_fix_labels(out_dir / "fix_labels.png", results["fix_labels"], title)
    np.savez_compressed(out_dir / "scores.npz", **{name: s for name, (_, s) in rankings.items()})


# ------------------------------------------------------------------------------------------------------- main
def evaluate(cfg: DictConfig, command: str = "") -> dict[str, Any]:
    """Run the whole evaluation of ``cfg`` (see the module docstring); returns what ``results.json`` holds."""
    clock = Clock()
    L.seed_everything(cfg.seed, verbose=False)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    train, test = dm.train_set, dm.test_set
    flipped = train.flipped_ids
    if len(flipped) == 0:
        raise ValueError("the training set has no flipped labels (data.label_noise = 0): nothing to detect")
    x, y, y_clean = train.images, train.targets, train.clean_targets
    out_dir = Path(cfg.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    model = instantiate(cfg.model)
    margins_cb = MarginCallback(train, keep_checkpoints=True)
    store_cb = ResponsibilityCallback(out_dir / "responsibility.zarr", overwrite=True, **_callback_kwargs(cfg))
    quiet_trainer(cfg.max_epochs, [store_cb, margins_cb]).fit(model, train_dataloaders=dm.train_dataloader())
    clock.lap("train_and_record")
    store = ResponsibilityStore.open(out_dir / "responsibility.zarr")

    rankings: dict[str, tuple[str, np.ndarray]] = {
        name: ("responsibility", s) for name, s in responsibility_scores(store, cfg.scores).items()
    }
    clock.lap("responsibility_scores")
    states = checkpoint_states(cfg, margins_cb.checkpoints, x) if cfg.peers.tracin else []
    rankings |= {name: ("peer", s) for name, s in peer_scores(cfg, model, margins_cb, states, x, y).items()}
    clock.lap("peers")
    if cfg.peers.cleanlab.folds:
        rankings["cleanlab_label_quality"] = ("peer", cleanlab_scores(cfg, x, y))
        clock.lap("cleanlab_cross_validation")
    rankings["random"] = ("baseline", np.random.default_rng([cfg.seed, 3]).random(len(x)))
    mislabel = _mislabel_rows(rankings, flipped)

    results: dict[str, Any] = {
        "experiment": cfg.task_name,
        "run": cfg.run_name,
        "command": command,
        "setup": {
            "train_examples": len(x),
            "classes": cfg.data.num_classes,
            "flipped": len(flipped),
            **run_setup(cfg, store),
        },
        "mislabel": mislabel,
        "flipped_ids": flipped.tolist(),
    }
    if cfg.sanity.n_test:
        x_test = test.images[: cfg.sanity.n_test]
        predicted, attributions = explain_test_inputs(cfg, model, store, margins_cb.checkpoints, x, y, x_test)
        L.seed_everything(cfg.seed + 1, verbose=False)
        random_model = instantiate(cfg.model)  # re-initialised: same architecture, untrained weights
        random_ckpt = [({k: v.detach().clone() for k, v in random_model.state_dict().items()}, 1.0)]
        _, randomized = explain_test_inputs(cfg, random_model, store, random_ckpt, x, y, x_test)
        results["sanity_setup"] = OmegaConf.to_container(cfg.sanity, resolve=True) | {"n_test": len(x_test)}
        results["sanity"] = sanity_metrics(attributions, randomized, predicted, y, cfg.sanity.k)
        clock.lap("sanity")
        if cfg.lds.subsets:
            results["lds_setup"] = OmegaConf.to_container(cfg.lds, resolve=True)
            results["lds"] = lds_scores(cfg, x, y, x_test, predicted, attributions)
            clock.lap("lds")
    if cfg.fix_labels.steps:
        auc = {r["score"]: (r["kind"], r["auc"]) for r in mislabel}
        orders = {}
        for kind in ("responsibility", "peer"):
            best = max((a, n) for n, (k, a) in auc.items() if k == kind)[1]
            orders[f"{best} ({kind})"] = np.argsort(-rankings[best][1], kind="stable")
        orders["random"] = np.random.default_rng([cfg.seed, 4]).permutation(len(x))
        results["fix_labels"] = fix_labels_curve(cfg, x, y, y_clean, test.images, test.targets, orders)
        clock.lap("fix_labels")
    results["wall_s"] = clock.totals()
    results["config"] = OmegaConf.to_container(cfg, resolve=True)

    write_results(out_dir, results, rankings)
    if cfg.publish:
        publish(out_dir, cfg.docs_dir, PUBLISHED)
    return results
