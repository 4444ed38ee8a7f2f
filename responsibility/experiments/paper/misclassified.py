"""Paper appendix A.4: the misclassified test inputs and their most responsible training examples; the fraction
whose top-1 example carries the (wrong) predicted label, the true label, or another one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from responsibility.experiments.datasets import ImageClassificationDataset
from responsibility.experiments.paper.explanations import responsible_examples
from responsibility.experiments.reporting import fraction, markdown_table, pyplot, save_figure, write_csv
from responsibility.experiments.runs import RecordedRun

__all__ = ["misclassified_experiment", "misclassified_markdown"]


def misclassified_experiment(
    cfg: DictConfig,
    run: RecordedRun,
    train: ImageClassificationDataset,
    test: ImageClassificationDataset,
    out_dir: Path,
) -> dict[str, Any]:
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
        out["signs"][sign] = {
            "misclassified": len(wrong),
            "test_accuracy": float(np.mean(pred == y)),
            "top1_label_is_predicted": fraction(top1[wrong] == pred[wrong]),
            "top1_label_is_true": fraction(top1[wrong] == y[wrong]),
            "top1_label_is_other": fraction((top1[wrong] != pred[wrong]) & (top1[wrong] != y[wrong])),
            "topk_labels_predicted_share": fraction(labels[ids[wrong]] == pred[wrong, None]),
            "topk_labels_true_share": fraction(labels[ids[wrong]] == y[wrong, None]),
            "correct_inputs_top1_label_is_predicted": fraction(top1[right] == pred[right]),
        }
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
        _explanation_grid(
            [
                (
                    test.images[i],
                    f"test {i}\ntrue: {names[y[i]]}\npred: {names[pred[i]]}",
                    [(train.images[m], f"#{m} {names[labels[m]]}") for m in ids[i]],
                )
                for i in wrong[: int(c.grid_rows)]
            ],
            out_dir / f"misclassified_{sign}.png",
            f"Misclassified test inputs and their {int(c.k)} most responsible training examples (sign {sign})",
        )
    write_csv(out_dir / "misclassified.csv", rows)
    return out


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
    save_figure(fig, path, dpi=100, rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))


def misclassified_markdown(r: dict[str, Any]) -> list[str]:
    """The A.4 section of ``results.md``."""
    lines = [
        "",
        f"## A.4 misclassified test inputs ({r['n_test']} test inputs explained, k = {r['k']})",
        "",
        "Labels of the most responsible (top-1) training example of each misclassified input; the top-k "
        "columns give the share of all k examples; the last column is the same top-1 check on the correctly "
        "classified inputs.",
        "",
    ]
    return lines + markdown_table(
        [
            "sign",
            "misclassified",
            "top-1 = predicted (wrong) label",
            "top-1 = true label",
            "top-1 = other",
            "top-k = predicted",
            "top-k = true",
            "correct inputs: top-1 = predicted",
        ],
        (
            [
                sign,
                v["misclassified"],
                *(
                    f"{v[key]:.3f}"
                    for key in (
                        "top1_label_is_predicted",
                        "top1_label_is_true",
                        "top1_label_is_other",
                        "topk_labels_predicted_share",
                        "topk_labels_true_share",
                        "correct_inputs_top1_label_is_predicted",
                    )
                ),
            ]
            for sign, v in r["signs"].items()
        ),
    )
