"""What ``scripts/shortcut.py`` does with a composed Hydra config: the spurious-correlation (shortcut) test.

1. Load ``cfg.data`` and plant a bright square patch (``cfg.shortcut``: size, corner, value) on a seeded
   ``fraction`` of the training images labelled ``target_class``, and on ``other_fraction`` of the others
   (:mod:`responsibility.evaluation.shortcut`).
2. Train ``cfg.model`` on the patched data with the :class:`ResponsibilityCallback` (``cfg.responsibility``,
   ``cfg.attribution``) and a :class:`MarginCallback` that keeps the epoch-end checkpoints (for TracIn).
3. Take ``cfg.test.n_test`` test images whose label is not the shortcut class, plant the patch on them, and
   measure how often the patch moves the prediction to the shortcut class.
4. Explain the patched test inputs: :func:`responsibility.query.explain` with each entry of
   ``cfg.explain.explainers`` (layers, top_weights), ranked by R (``abs``) and by R_pos − R_neg (``signed``);
   last-layer TracInCP (:mod:`responsibility.evaluation.peers`) as a peer; a random ranking and an "explained class"
   ranking
   (training examples labelled with the explained class first, random within) as baselines.
5. Score every method per test input against the mask of patched training examples: AUPRC over all training
   examples, within the shortcut class and within the other classes, and precision@k; averaged over all patched
   test inputs and over those whose prediction the patch flipped.
6. Write ``results.json``, ``shortcut.csv``, ``results.md``, ``examples.png`` (patched test inputs and their top
   training images per method, patched ones framed in red), ``auprc.png`` and ``scores.npz`` into
   ``cfg.results_dir``; with ``cfg.publish`` copy all but ``scores.npz`` to ``cfg.docs_dir``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from responsibility.callbacks.margins import MarginCallback
from responsibility.callbacks.responsibility import ResponsibilityCallback
from responsibility.choices import check_choice
from responsibility.evaluation.peers import tracin_influence
from responsibility.evaluation.shortcut import (
    COMPOSITION,
    auprc_rows,
    choose_patched,
    plant_patch,
    precision_at_k,
    topk_composition,
)
from responsibility.experiments.evaluate import checkpoint_states, predict
from responsibility.experiments.reporting import Clock, publish, pyplot, run_setup, write_csv
from responsibility.experiments.trainers import quiet_trainer
from responsibility.query import ExplainOptions, attribute, explain
from responsibility.store import ResponsibilityStore

__all__ = ["patch_value", "run_shortcut", "shortcut_metrics"]

PUBLISHED = ("results.json", "shortcut.csv", "results.md", "examples.png", "auprc.png")
ExplainTarget = Literal["predicted", "shortcut"]


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


# ------------------------------------------------------------------------------------------------- metrics
def shortcut_metrics(
    scores: np.ndarray,
    patched: np.ndarray,
    labels: np.ndarray,
    shortcut_class: int,
    ks: list[int],
    composition_k: int | None = None,
) -> dict[str, np.ndarray]:
    """Per test input (rows of ``scores``, (n_test, N)): AUPRC against ``patched`` over all training examples,
    within ``shortcut_class`` and within the other classes (absent where the mask marks none or all there),
    precision@k for each k, and (``composition_k``) what the top k are made of, as ``top<k>_<part>``."""
    in_class = labels == shortcut_class
    out = {"auprc": auprc_rows(scores, patched)}
    for name, among in (("auprc_in_class", in_class), ("auprc_other_classes", ~in_class)):
        marked = patched[among]
        if marked.any() and not marked.all():
            out[name] = auprc_rows(scores, patched, among)
    for k in ks:
        out[f"precision@{k}"] = precision_at_k(scores, patched, k)
    if composition_k is not None:
        parts = topk_composition(scores, patched, in_class, composition_k)
        out |= {f"top{composition_k}_{name}": v for name, v in parts.items()}
    return out


def base_rates(patched: np.ndarray, labels: np.ndarray, shortcut_class: int) -> dict[str, float]:
    """What a random ranking scores in expectation: the share of patched examples (overall, in class, others),
    and the share of each part of :data:`~responsibility.evaluation.shortcut.COMPOSITION` in the training set."""
    in_class = labels == shortcut_class
    parts = (patched & in_class, ~patched & in_class, patched & ~in_class, ~patched & ~in_class)
    return {
        "all": float(patched.mean()),
        "in_class": float(patched[in_class].mean()),
        "other_classes": float(patched[~in_class].mean()) if (~in_class).any() else float("nan"),
    } | {name: float(part.mean()) for name, part in zip(COMPOSITION, parts, strict=True)}


def _summaries(
    per_input: dict[str, dict[str, np.ndarray]], kinds: dict[str, str], subsets: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    rows = []
    for subset, rows_mask in subsets.items():
        for method, metrics in per_input.items():
            row: dict[str, Any] = {"subset": subset, "n_test": int(rows_mask.sum()), "method": method}
            row["kind"] = kinds[method]
            for name, values in metrics.items():
                row[name] = float(values[rows_mask].mean()) if rows_mask.any() else None
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------- outputs
def _fmt(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _markdown(results: dict[str, Any]) -> str:
    s, t = results["setup"], results["test"]
    c = s["shortcut_class_name"]
    rates = results["base_rates"]
    metric_names = [m for m in results["metric_names"] if not m.startswith("top")]
    composition = [m for m in results["metric_names"] if m.startswith("top")]
    header = {
        "auprc": "AUPRC",
        "auprc_in_class": f"AUPRC within {c}",
        "auprc_other_classes": "AUPRC within other classes",
    }
    lines = [
        f"# Shortcut test: {results['run']}",
        "",
        f"`{results['command']}`",
        "",
        f"{s['train_examples']} training images ({s['classes']} classes); a {s['patch_size']}x{s['patch_size']} "
        f"patch of value {s['patch_value']:.3g} in the {s['corner'].replace('_', ' ')} corner of "
        f"{s['patched_in_class']} of the {s['in_class']} `{c}` images and {s['patched_other']} of the "
        f"{s['train_examples'] - s['in_class']} others. {s['model']}, {s['optimizer']} lr {s['lr']}, batch "
        f"{s['batch_size']}, {s['epochs']} epochs ({s['steps']} steps), attribution `{s['attribution']}`, "
        f"recorded {s['tracked']}. Wall times (s): " + ", ".join(f"{k} {v}" for k, v in results["wall_s"].items()),
        "",
        "## What the patch does to the model",
        "",
        f"Clean test accuracy {t['accuracy_clean']:.3f} (all {t['test_images']} test images), "
        f"accuracy on the {t['shortcut_class_images']} `{c}` test images {t['accuracy_shortcut_class_clean']:.3f} "
        f"without the patch, {t['accuracy_shortcut_class_patched']:.3f} with it. "
        f"On {t['n_test']} test images of the other classes:",
        "",
        "| | predicted as the shortcut class |",
        "| --- | --- |",
        f"| without the patch | {t['shortcut_rate_clean']:.3f} |",
        f"| with the patch | {t['shortcut_rate_patched']:.3f} |",
        f"| flipped by the patch (of those not predicted `{c}` without it) | {t['flip_rate']:.3f} "
        f"({t['flipped']} of {t['not_shortcut_clean']}) |",
        "",
        f"Explained: `{results['explain']['target']}` class; explainers {results['explain']['explainers']}; "
        f"chosen weights per layer: {results['explain']['chosen_layers']}.",
    ]
    for subset in results["subsets"]:
        rows = [r for r in results["summary"] if r["subset"] == subset]
        n = rows[0]["n_test"] if rows else 0
        lines += [
            "",
            f"## Finding the patched training images: {subset} ({n} test inputs)",
            "",
            "Mean over test inputs of the AUPRC of each explanation's scores against the patched-example mask, "
            "and precision@k of its top-k list.",
            "",
            "| method | kind | " + " | ".join(header.get(m, m) for m in metric_names) + " |",
            "| --- | --- |" + " --- |" * len(metric_names),
        ]
        for r in rows:
            lines.append(f"| {r['method']} | {r['kind']} | " + " | ".join(_fmt(r.get(m)) for m in metric_names) + " |")
        base = {
            "auprc": rates["all"],
            "auprc_in_class": rates["in_class"],
            "auprc_other_classes": rates["other_classes"],
        }
        lines.append(
            "| share of patched examples (random's expectation) | | "
            + " | ".join(_fmt(base.get(m, rates["all"])) for m in metric_names)
            + " |"
        )
        if composition:
            k = composition[0][3:].split("_", 1)[0]
            parts = {
                "patched_in_class": f"patched `{c}`",
                "unpatched_in_class": f"unpatched `{c}`",
                "patched_other": "patched, other classes",
                "unpatched_other": "unpatched, other classes",
            }
            lines += [
                "",
                f"What the top {k} are made of (mean shares over the same test inputs; each row sums to 1):",
                "",
                "| method | " + " | ".join(parts[m.split("_", 1)[1]] for m in composition) + " |",
                "| --- |" + " --- |" * len(composition),
            ]
            for r in rows:
                lines.append(f"| {r['method']} | " + " | ".join(_fmt(r.get(m)) for m in composition) + " |")
            lines.append(
                "| share in the training set (random's expectation) | "
                + " | ".join(_fmt(rates[m.split("_", 1)[1]]) for m in composition)
                + " |"
            )
    return "\n".join(lines) + "\n"


def _show(ax: Any, image: np.ndarray, title: str, framed: bool) -> None:
    ax.imshow(image, cmap="gray", vmin=float(image.min()), vmax=max(float(image.max()), float(image.min()) + 1e-6))
    ax.set_title(title, fontsize=6)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("red" if framed else "lightgrey")
        spine.set_linewidth(2.5 if framed else 0.5)


def _plot_examples(
    path: Path,
    methods: dict[str, np.ndarray],
    inputs: list[int],
    x_test: torch.Tensor,
    test_labels: np.ndarray,
    predicted: np.ndarray,
    x_train: torch.Tensor,
    train_labels: np.ndarray,
    patched: np.ndarray,
    class_names: list[str],
    k: int,
) -> None:
    plt = pyplot()
    rows = [(i, m) for i in inputs for m in methods]
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(1.05 * (k + 1), 1.2 * len(rows)), squeeze=False)
    for r, (i, m) in enumerate(rows):
        title = f"{class_names[test_labels[i]]} → {class_names[predicted[i]]}"
        _show(axes[r, 0], x_test[i, 0].numpy(), title, False)
        axes[r, 0].set_ylabel(m.replace("responsibility_", "R "), fontsize=6, rotation=0, ha="right", va="center")
        for j, ex in enumerate(np.argsort(-methods[m][i], kind="stable")[:k]):
            _show(axes[r, j + 1], x_train[ex, 0].numpy(), f"#{ex} {class_names[train_labels[ex]]}", patched[ex])
    fig.suptitle("patched test images (left) and their top training images (red frame: patched)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (1.2 * len(rows))))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_auprc(path: Path, summary: list[dict[str, Any]], base: float, title: str) -> None:
    plt = pyplot()
    subsets = list(dict.fromkeys(r["subset"] for r in summary))
    methods = list(dict.fromkeys(r["method"] for r in summary))
    value = {(r["subset"], r["method"]): r["auprc"] for r in summary}
    n_test = {r["subset"]: r["n_test"] for r in summary}
    height = 0.8 / len(subsets)
    fig, ax = plt.subplots(figsize=(6.4, 0.4 * len(methods) + 1.4))
    y = np.arange(len(methods))
    for j, subset in enumerate(subsets):
        ax.barh(
            y + j * height,
            [value[(subset, m)] or 0.0 for m in methods],
            height,
            label=f"{subset} ({n_test[subset]} test inputs)",
        )
    ax.axvline(base, color="black", lw=0.8, ls=":", label=f"share of patched examples ({base:.3f})")
    ax.set_yticks(y + height * (len(subsets) - 1) / 2, methods)
    ax.invert_yaxis()
    ax.set(xlabel="mean AUPRC against the patched training examples", xlim=(0, 1), title=title)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(out_dir: Path, results: dict[str, Any], figure: dict[str, Any]) -> None:
    """results.json, shortcut.csv, results.md, examples.png and auprc.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    fields = ["subset", "n_test", "method", "kind", *results["metric_names"]]
    write_csv(out_dir / "shortcut.csv", results["summary"], fields)
    (out_dir / "results.md").write_text(_markdown(results))
    _plot_examples(out_dir / "examples.png", **figure)
    _plot_auprc(out_dir / "auprc.png", results["summary"], results["base_rates"]["all"], results["run"])


# ------------------------------------------------------------------------------------------------------- main
def run_shortcut(cfg: DictConfig, command: str = "") -> dict[str, Any]:
    """Run the whole shortcut test of ``cfg`` (see the module docstring); returns what ``results.json`` holds."""
    clock = Clock()
    L.seed_everything(cfg.seed, verbose=False)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    _check(cfg, dm.num_classes)
    train, test = dm.train_set, dm.test_set
    s = cfg.shortcut
    t = int(s.target_class)
    value = patch_value(dm.normalize) if s.value is None else float(s.value)
    patch = {"size": int(s.size), "value": value, "corner": str(s.corner)}
    y = train.targets
    labels = y.numpy()
    mask = choose_patched(labels, t, float(s.fraction), float(s.other_fraction), cfg.seed)
    if not mask.any():
        raise ValueError("no training example gets the patch: raise shortcut.fraction or shortcut.other_fraction")
    images, patched = plant_patch(train.images, mask, **patch)
    train.images = torch.from_numpy(images)  # the loader serves the patched images
    x = train.images
    out_dir = Path(cfg.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clock.lap("data")

    model = instantiate(cfg.model)
    margins_cb = MarginCallback(train, keep_checkpoints=True)
    kwargs = OmegaConf.to_container(cfg.responsibility, resolve=True)
    store_cb = ResponsibilityCallback(
        out_dir / "responsibility.zarr", overwrite=True, attribution=cfg.attribution, **kwargs
    )
    quiet_trainer(cfg.max_epochs, [store_cb, margins_cb]).fit(model, train_dataloaders=dm.train_dataloader())
    store = ResponsibilityStore.open(out_dir / "responsibility.zarr")
    clock.lap("train_and_record")

    # Test inputs: the first n_test test images of the other classes, with the patch.
    test_y = test.targets.numpy()
    ids = np.flatnonzero(test_y != t)[: int(cfg.test.n_test)]
    x_clean = test.images[ids]
    x_test = torch.from_numpy(plant_patch(x_clean, np.ones(len(ids), bool), **patch)[0])
    pred_clean = predict(model, x_clean).argmax(1).numpy()
    pred = predict(model, x_test).argmax(1).numpy()
    own = np.flatnonzero(test_y == t)
    own_patched = torch.from_numpy(plant_patch(test.images[own], np.ones(len(own), bool), **patch)[0])
    not_t = pred_clean != t
    flipped = not_t & (pred == t)
    test_stats = {
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
    }
    clock.lap("test_predictions")

    e = cfg.explain
    targets = pred if e.target == "predicted" else np.full(len(ids), t)
    target_arg = None if e.target == "predicted" else t
    methods: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    chosen_layers: dict[str, dict[str, int]] = {}
    for name, entry in e.explainers.items():
        layers = None if entry.layers is None else [str(v) for v in entry.layers]
        # The paper's rule: R (abs) and R_pos - R_neg (net) of the chosen weights, for every training example.
        opts = ExplainOptions(
            method="most_activated", k=int(e.k), layers=layers, targets=target_arg, top_weights=entry.top_weights
        )
        ex = explain(model, store, x_test, opts)
        chosen_layers[name] = dict(Counter(n for item in ex for n, _, _ in item.weights))
        methods[f"responsibility_{name}"] = attribute(model, store, x_test, opts, sign="abs")
        methods[f"responsibility_{name}_signed"] = attribute(model, store, x_test, opts, sign="net")
    kinds |= dict.fromkeys(methods, "responsibility")
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
    metric_names = list(next(iter(per_input.values())))
    subsets = {"all": np.ones(len(ids), bool)}
    if flipped.any():
        subsets["flipped"] = flipped
    summary = _summaries(per_input, kinds, subsets)
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
            "patch_size": patch["size"],
            "patch_value": value,
            "corner": patch["corner"],
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
        "metric_names": metric_names,
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
        "test_labels": test_y[ids],
        "predicted": pred,
        "x_train": x,
        "train_labels": labels,
        "patched": patched,
        "class_names": names,
        "k": int(cfg.figure.k),
    }
    results["config"] = OmegaConf.to_container(cfg, resolve=True)
    results["wall_s"] = clock.totals()
    write_results(out_dir, results, figure)
    np.savez_compressed(
        out_dir / "scores.npz", patched=patched, **{m: sc.astype(np.float32) for m, sc in methods.items()}
    )
    if cfg.publish:
        publish(out_dir, cfg.docs_dir, PUBLISHED)
    return results
