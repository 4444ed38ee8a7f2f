"""What ``scripts/shortcut.py`` writes: ``results.md``, ``shortcut.csv``, the example grid and the AUPRC bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from responsibility.experiments.reporting import markdown_table, pyplot, save_figure, write_csv, write_results

__all__ = ["PUBLISHED", "write_outputs"]

PUBLISHED = ("results.json", "shortcut.csv", "results.md", "examples.png", "auprc.png")


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
    # What a random ranking scores: the share of patched examples among those each metric ranks.
    base = dict.fromkeys(metric_names, rates["all"])
    base |= {"auprc_in_class": rates["in_class"], "auprc_other_classes": rates["other_classes"]}
    parts = {
        "patched_in_class": f"patched `{c}`",
        "unpatched_in_class": f"unpatched `{c}`",
        "patched_other": "patched, other classes",
        "unpatched_other": "unpatched, other classes",
    }
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
        ]
        lines += markdown_table(
            ["method", "kind", *(header.get(m, m) for m in metric_names)],
            [
                *([r["method"], r["kind"], *(_fmt(r.get(m)) for m in metric_names)] for r in rows),
                [
                    "share of patched examples (random's expectation)",
                    "",
                    *(_fmt(base[m]) for m in metric_names),
                ],
            ],
        )
        if composition:
            k = composition[0][3:].split("_", 1)[0]
            parts_of = {m: m.split("_", 1)[1] for m in composition}  # top10_patched_in_class -> patched_in_class
            lines += [
                "",
                f"What the top {k} are made of (mean shares over the same test inputs; each row sums to 1):",
                "",
            ]
            lines += markdown_table(
                ["method", *(parts[parts_of[m]] for m in composition)],
                [
                    *([r["method"], *(_fmt(r.get(m)) for m in composition)] for r in rows),
                    [
                        "share in the training set (random's expectation)",
                        *(_fmt(rates[m.split("_", 1)[1]]) for m in composition),
                    ],
                ],
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
    save_figure(fig, path, dpi=110, rect=(0, 0, 1, 1 - 0.3 / (1.2 * len(rows))))


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
    save_figure(fig, path, dpi=120)


def write_outputs(out_dir: Path, results: dict[str, Any], figure: dict[str, Any]) -> None:
    """results.json, shortcut.csv, results.md, examples.png and auprc.png in ``out_dir``."""
    write_results(out_dir, results, _markdown)
    fields = ["subset", "n_test", "method", "kind", *results["metric_names"]]
    write_csv(out_dir / "shortcut.csv", results["summary"], fields)
    _plot_examples(out_dir / "examples.png", **figure)
    _plot_auprc(out_dir / "auprc.png", results["summary"], results["base_rates"]["all"], results["run"])
