"""The shortcut test as ``scripts/shortcut.py`` runs it: plant, train and record, predict, explain, score, write."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from responsibility.callbacks.margins import MarginCallback
from responsibility.choices import check_choice
from responsibility.evaluation.peers import tracin_influence
from responsibility.evaluation.shortcut import choose_patched, plant_patch
from responsibility.experiments.reporting import Clock, publish, run_setup
from responsibility.experiments.runs import checkpoint_states, predict, prepared_data, record_run
from responsibility.experiments.shortcut.metrics import base_rates, shortcut_metrics, summaries
from responsibility.experiments.shortcut.report import PUBLISHED, write_outputs
from responsibility.query import ExplainOptions, attribute, explain
from responsibility.store import ResponsibilityStore

__all__ = ["patch_value", "run_shortcut"]

ExplainTarget = Literal["predicted", "shortcut"]
PatchFn = Callable[[torch.Tensor], torch.Tensor]


def patch_value(normalize: list[float] | None) -> float:
    """The maximum intensity in the datasets' scale: 1.0 for images in [0, 1], ``(1 − mean) / std`` if normalized."""
    return 1.0 if normalize is None else (1.0 - float(normalize[0])) / float(normalize[1])


def _check(cfg: DictConfig, num_classes: int) -> None:
    s = cfg.shortcut
    if not 0 <= int(s.target_class) < num_classes:
        raise ValueError(f"shortcut.target_class must be in 0..{num_classes - 1}, got {s.target_class}")
    check_choice("explain.target", cfg.explain.target, ExplainTarget)
    if cfg.test.n_test < 1:
        raise ValueError(f"test.n_test must be positive, got {cfg.test.n_test}")
    if not cfg.explain.explainers:
        raise ValueError("explain.explainers is empty: nothing to evaluate")


def _test_predictions(
    model: L.LightningModule, test: Any, ids: np.ndarray, x_test: torch.Tensor, patch: PatchFn, t: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(predictions of the patched test inputs, which of them the patch flipped to class t, statistics)``."""
    test_y = test.targets.numpy()
    pred_clean = predict(model, test.images[ids]).argmax(1).numpy()
    pred = predict(model, x_test).argmax(1).numpy()
    own = np.flatnonzero(test_y == t)
    own_patched = patch(test.images[own])
    not_t = pred_clean != t
    flipped = not_t & (pred == t)
    return (
        pred,
        flipped,
        {
            "test_images": len(test_y),
            "accuracy_clean": float((predict(model, test.images).argmax(1).numpy() == test_y).mean()),
            "shortcut_class_images": len(own),
            "accuracy_shortcut_class_clean": float((predict(model, test.images[own]).argmax(1).numpy() == t).mean()),
            "accuracy_shortcut_class_patched": float((predict(model, own_patched).argmax(1).numpy() == t).mean()),
            "n_test": len(ids),
            "test_ids": ids.tolist(),
            "shortcut_rate_clean": float((pred_clean == t).mean()),
            "shortcut_rate_patched": float((pred == t).mean()),
            "not_shortcut_clean": int(not_t.sum()),
            "flipped": int(flipped.sum()),
            "flip_rate": float(flipped.sum() / max(1, not_t.sum())),
        },
    )


def _responsibility_methods(
    cfg: DictConfig, model: L.LightningModule, store: ResponsibilityStore, x_test: torch.Tensor, target: int | None
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
    """Each explainer of ``cfg.explain.explainers``, ranked by R (abs) and by R_pos − R_neg (signed), and the
    layers of the weights it chose."""
    e = cfg.explain
    methods: dict[str, np.ndarray] = {}
    chosen_layers: dict[str, dict[str, int]] = {}
    for name, entry in e.explainers.items():
        layers = None if entry.layers is None else [str(v) for v in entry.layers]
        # The paper's rule: R (abs) and R_pos - R_neg (net) of the chosen weights, for every training example.
        opts = ExplainOptions(
            method="most_activated", k=int(e.k), layers=layers, targets=target, top_weights=entry.top_weights
        )
        ex = explain(model, store, x_test, opts)
        chosen_layers[str(name)] = dict(Counter(n for item in ex for n, _, _ in item.weights))
        methods[f"responsibility_{name}"] = attribute(model, store, x_test, opts, sign="abs")
        methods[f"responsibility_{name}_signed"] = attribute(model, store, x_test, opts, sign="net")
    return methods, chosen_layers


def run_shortcut(cfg: DictConfig, command: str = "") -> dict[str, Any]:
    """Run the whole shortcut test of ``cfg`` (see :mod:`responsibility.experiments.shortcut`); returns what
    ``results.json`` holds."""
    clock = Clock()
    dm = prepared_data(cfg)
    _check(cfg, dm.num_classes)
    train, test = dm.train_set, dm.test_set
    s = cfg.shortcut
    t = int(s.target_class)
    value = patch_value(dm.normalize) if s.value is None else float(s.value)
    size, corner = int(s.size), str(s.corner)
    labels = train.targets.numpy()
    mask = choose_patched(labels, t, float(s.fraction), float(s.other_fraction), cfg.seed)
    if not mask.any():
        raise ValueError("no training example gets the patch: raise shortcut.fraction or shortcut.other_fraction")
    images, patched = plant_patch(train.images, mask, size=size, value=value, corner=corner)
    train.images = torch.from_numpy(images)  # the loader serves the patched images
    x = train.images
    out_dir = Path(cfg.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clock.lap("data")

    margins_cb = MarginCallback(train, keep_checkpoints=True)
    run = record_run(cfg, dm.train_dataloader(), cfg.seed, callbacks=[margins_cb])
    model, store = run.model, run.store
    clock.lap("train_and_record")

    # Test inputs: the first n_test test images of the other classes, with the patch.
    ids = np.flatnonzero(test.targets.numpy() != t)[: int(cfg.test.n_test)]

    def patch(images: torch.Tensor) -> torch.Tensor:  # every image of a batch, patched
        return torch.from_numpy(
            plant_patch(images, np.ones(len(images), bool), size=size, value=value, corner=corner)[0]
        )

    x_test = patch(test.images[ids])
    pred, flipped, test_stats = _test_predictions(model, test, ids, x_test, patch, t)
    clock.lap("test_predictions")

    e = cfg.explain
    targets = pred if e.target == "predicted" else np.full(len(ids), t)
    methods, chosen_layers = _responsibility_methods(cfg, model, store, x_test, None if e.target == "predicted" else t)
    kinds = dict.fromkeys(methods, "responsibility")
    clock.lap("explain")
    ckpts = margins_cb.checkpoints
    methods["tracin"] = tracin_influence(
        checkpoint_states(cfg, ckpts, x_test), targets, checkpoint_states(cfg, ckpts, x), labels
    )
    kinds["tracin"] = "peer"
    clock.lap("tracin")
    rng = np.random.default_rng([cfg.seed, 6])
    methods["random"] = rng.random((len(ids), len(x)))
    methods["explained_class"] = (labels[None, :] == targets[:, None]) + rng.random((len(ids), len(x)))
    kinds |= {"random": "baseline", "explained_class": "baseline"}

    ks = [int(k) for k in cfg.metrics.precision_at]
    comp_k = None if cfg.metrics.composition_k is None else int(cfg.metrics.composition_k)
    per_input = {m: shortcut_metrics(sc, patched, labels, t, ks, comp_k) for m, sc in methods.items()}
    subsets = {"all": np.ones(len(ids), bool)}
    if flipped.any():
        subsets["flipped"] = flipped
    summary = summaries(per_input, kinds, subsets)
    clock.lap("metrics")

    names = list(dm.class_names)
    results: dict[str, Any] = {
        "experiment": cfg.task_name,
        "run": cfg.run_name,
        "command": command,
        "setup": {
            "train_examples": len(x),
            "classes": dm.num_classes,
            "shortcut_class": t,
            "shortcut_class_name": names[t],
            "in_class": int((labels == t).sum()),
            "patched_in_class": int(patched[labels == t].sum()),
            "patched_other": int(patched[labels != t].sum()),
            "patch_size": size,
            "patch_value": value,
            "corner": corner,
            **run_setup(cfg, store),
        },
        "test": test_stats,
        "explain": {
            "target": e.target,
            "k": int(e.k),
            "explainers": OmegaConf.to_container(e.explainers, resolve=True),
            "chosen_layers": chosen_layers,
        },
        "base_rates": base_rates(patched, labels, t),
        "metric_names": list(next(iter(per_input.values()))),
        "subsets": list(subsets),
        "summary": summary,
        "patched_ids": np.flatnonzero(patched).tolist(),
        "flipped_inputs": np.flatnonzero(flipped).tolist(),
    }
    order = list(np.flatnonzero(flipped)) + list(np.flatnonzero(~flipped))
    shown = [str(m) for m in (cfg.figure.methods or list(methods))]
    unknown = sorted(set(shown) - set(methods))
    if unknown:
        raise ValueError(f"figure.methods {unknown} are not methods of this run; it has {list(methods)}")
    figure = {
        "methods": {m: methods[m] for m in shown},
        "inputs": [int(i) for i in order[: int(cfg.figure.inputs)]],
        "x_test": x_test,
        "test_labels": test.targets.numpy()[ids],
        "predicted": pred,
        "x_train": x,
        "train_labels": labels,
        "patched": patched,
        "class_names": names,
        "k": int(cfg.figure.k),
    }
    results["config"] = OmegaConf.to_container(cfg, resolve=True)
    results["wall_s"] = clock.totals()
    write_outputs(out_dir, results, figure)
    arrays: dict[str, Any] = {"patched": patched} | {m: sc.astype(np.float32) for m, sc in methods.items()}
    np.savez_compressed(out_dir / "scores.npz", **arrays)
    if cfg.publish:
        publish(out_dir, cfg.docs_dir, PUBLISHED)
    return results
