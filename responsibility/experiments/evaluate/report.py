"""What ``scripts/evaluate.py`` writes: the mislabel table, detection curves, the Figure 4 plot and ``results.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from responsibility.evaluation import detection_curve, mislabel_auc, recall_at
from responsibility.experiments.reporting import markdown_table, pyplot, save_figure, write_csv, write_results

__all__ = ["PUBLISHED", "mislabel_rows", "write_outputs"]

PUBLISHED = ("results.json", "mislabel.csv", "results.md", "detection.png", "fix_labels.png")


def mislabel_rows(rankings: dict[str, tuple[str, np.ndarray]], flipped: np.ndarray) -> list[dict[str, Any]]:
    """Recall of the flipped labels at 10% / 20% inspected and the detection AUC / N of each ranking."""
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
    save_figure(fig, path, dpi=120)


def _plot_fix_labels(path: Path, fix: dict[str, Any], title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name, acc in fix["accuracy"].items():
        ax.plot(fix["fractions"], acc, marker="o", label=name)
    ax.set(xlabel="fraction of training data checked (labels fixed)", ylabel="test accuracy", title=title)
    ax.legend(fontsize=7)
    save_figure(fig, path, dpi=120)


def _markdown(results: dict[str, Any]) -> str:
    s = results["setup"]
    lines = [
        f"# {results['experiment']}: {results['run']}, seed {results['seed']}",
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
    ]
    lines += markdown_table(
        ["score", "kind", "recall@10%", "recall@20%", "AUC/N"],
        (
            [r["score"], r["kind"], f"{r['recall@10%']:.2f}", f"{r['recall@20%']:.2f}", f"{r['auc']:.3f}"]
            for r in results["mislabel"]
        ),
    )
    if results.get("sanity"):
        lds = results.get("lds")
        setup = results["sanity_setup"]
        lines += [
            "",
            f"## Explanations of {setup['n_test']} test inputs (k = {setup['k']}; methods: {setup['methods']} "
            "and last-layer TracIn)",
            "",
            "Every method and both models explain the trained model's predicted class (randomization: same targets).",
            "",
        ]
        header = ["attribution", "class detection", "model randomization (same targets; lower is better)"]
        lines += markdown_table(
            header + ["top-k cardinality"] + (["LDS"] if lds else []),
            (
                [
                    name,
                    f"{m['class_detection']:.3f}",
                    f"{m['model_randomization']:.3f}",
                    f"{m['topk_cardinality']:.3f}",
                ]
                + ([f"{lds[name]:.3f}"] if lds else [])
                for name, m in results["sanity"].items()
            ),
        )
    if results.get("fix_labels"):
        fix = results["fix_labels"]
        names = list(fix["accuracy"])
        lines += [
            "",
            f"## Fixing labels in ranked order, retraining ({fix['retrained_models']} models; test accuracy)",
            "",
        ]
        lines += markdown_table(
            ["fraction checked", *names],
            ([f"{f:.1f}", *(f"{fix['accuracy'][n][i]:.4f}" for n in names)] for i, f in enumerate(fix["fractions"])),
        )
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, results: dict[str, Any], rankings: dict[str, tuple[str, np.ndarray]]) -> None:
    """results.json, mislabel.csv, results.md, detection.png (+ fix_labels.png) and scores.npz in ``out_dir``."""
    write_results(out_dir, results, _markdown)
    write_csv(out_dir / "mislabel.csv", results["mislabel"])
    title = f"{results['experiment']} {results['run']}"
    _plot_detection(out_dir / "detection.png", rankings, np.asarray(results["flipped_ids"]), title)
    if results.get("fix_labels"):
        _plot_fix_labels(out_dir / "fix_labels.png", results["fix_labels"], title)
    scores: dict[str, Any] = {name: s for name, (_, s) in rankings.items()}
    np.savez_compressed(out_dir / "scores.npz", **scores)
