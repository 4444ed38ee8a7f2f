"""PNG figures in the style of the paper: explanation grids (Fig. 5), interclass heatmaps (Fig. 3), R violins (Fig. 2).

matplotlib is imported lazily with the Agg backend, so importing this module needs no display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from responsibility.choices import Sign
from responsibility.query import Explanation
from responsibility.store import ResponsibilityStore

__all__ = ["explanation_grid", "interclass_heatmap", "responsibility_violin"]

# Values per layer drawn in a violin: enough for the shape of the distribution, small enough to plot fast.
VIOLIN_SAMPLES = 20000


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _image(x: Any) -> np.ndarray:
    """(C, H, W) / (H, W) tensor or array -> something imshow draws (grey or RGB)."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    if a.ndim == 3:
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
    return a


def _name(class_names: Sequence[str] | None, c: int | None) -> str:
    if c is None or c < 0:
        return "-"
    return str(class_names[c]) if class_names is not None and c < len(class_names) else str(c)


def explanation_grid(
    explanation: Explanation,
    test_images: Any,
    train_images: Any,
    train_labels: Any | None,
    class_names: Sequence[str] | None,
    path: str | Path,
) -> Path:
    """One row per input: the test image (with its prediction), then its k most responsible training images
    with their labels and scores."""
    plt = _pyplot()
    rows, k = len(explanation), explanation.k
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.6 * (k + 1), 1.9 * rows), squeeze=False)
    for r, item in enumerate(explanation):
        ax = axes[r, 0]
        ax.imshow(_image(test_images[item.input]), cmap="gray")
        ax.set_title(f"test {item.input}\npred: {_name(class_names, item.predicted)}", fontsize=7)
        for j, (ex, score) in enumerate(zip(item.example_ids, item.scores, strict=True), start=1):
            ax = axes[r, j]
            ax.imshow(_image(train_images[int(ex)]), cmap="gray")
            label = _name(class_names, int(train_labels[int(ex)])) if train_labels is not None else "-"
            ax.set_title(f"#{int(ex)} {label}\nR={float(score):.3g}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def interclass_heatmap(matrix: np.ndarray, class_names: Sequence[str] | None, path: str | Path) -> Path:
    """Heatmap of an interclass matrix (rows: training classes, columns: output units)."""
    plt = _pyplot()
    m = np.asarray(matrix, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * m.shape[1], 1 + 0.5 * m.shape[0]))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax)
    rows = [_name(class_names, i) for i in range(m.shape[0])]
    cols = [_name(class_names, i) for i in range(m.shape[1])]
    ax.set_yticks(range(m.shape[0]), rows, fontsize=7)
    ax.set_xticks(range(m.shape[1]), cols, fontsize=7, rotation=45, ha="right")
    ax.set_ylabel("training class")
    ax.set_xlabel("output unit")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def responsibility_violin(
    store: ResponsibilityStore, names: Sequence[str] | None, path: str | Path, *, sign: Sign = "abs", seed: int = 0
) -> Path:
    """Violin plot of the distribution of R values per parameter (log10 of the non-zero values), sub-sampled."""
    plt = _pyplot()
    names = list(names) if names is not None else store.parameters
    rng = np.random.default_rng(seed)
    data, labels = [], []
    for name in names:
        p = store.param(name)
        total = store.num_examples * p.units
        # Sample columns rather than reading all of R: a big layer costs only the columns drawn.
        cols = np.sort(
            rng.choice(p.units, size=min(p.units, max(1, VIOLIN_SAMPLES // store.num_examples)), replace=False)
        )
        values = store.read(name, sign, weights=cols).ravel()
        if values.size > VIOLIN_SAMPLES:
            values = rng.choice(values, VIOLIN_SAMPLES, replace=False)
        values = values[values > 0]
        data.append(np.log10(values) if values.size else np.zeros(1))
        labels.append(f"{name}\n({total:.2g} values)")
    fig, ax = plt.subplots(figsize=(1.5 + 1.4 * len(names), 4))
    ax.violinplot(data, showmedians=True)
    ax.set_xticks(range(1, len(names) + 1), labels, fontsize=7)
    ax.set_ylabel(f"log10 R ({sign}), non-zero values")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
