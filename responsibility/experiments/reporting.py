"""What the experiment pipelines (``evaluate``, ``paper``, ``shortcut``) share for their outputs: phase clocks, CSV
and Markdown tables, figures, the record of a run's set-up, ``results.json`` / ``results.md``, and publishing results
to ``docs/``."""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from responsibility.store import ResponsibilityStore

__all__ = [
    "Clock",
    "fraction",
    "markdown_table",
    "publish",
    "pyplot",
    "run_setup",
    "save_figure",
    "write_csv",
    "write_results",
]


class Clock:
    """Wall time of named phases, in seconds."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self._start = time.perf_counter()

    def lap(self, name: str) -> None:
        """Close the phase that ran since the last lap, under ``name``."""
        now = time.perf_counter()
        self.wall[name] = round(now - self._start, 2)
        self._start = now

    def totals(self) -> dict[str, float]:
        """Every phase plus their ``total``."""
        return self.wall | {"total": round(sum(self.wall.values()), 2)}


def fraction(mask: Any) -> float:
    """The share of true (or the mean) of ``mask``; NaN when it is empty."""
    mask = np.asarray(mask)
    return float(mask.mean()) if mask.size else float("nan")


def write_csv(path: Path, rows: list[dict[str, Any]], fieldnames: list[str] | None = None) -> None:
    """Rows as CSV, floats to 6 significant digits (``results.json`` keeps full precision)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or (list(rows[0]) if rows else ["empty"]))
        writer.writeheader()
        writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in rows)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table: the header, the separator, one line per row (cells as given)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (imported on first use: plotting is optional work)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int, rect: tuple[float, float, float, float] | None = None) -> None:
    """Lay ``fig`` out (within ``rect``, to leave room for a suptitle), write it to ``path`` and close it."""
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def run_setup(cfg: DictConfig, store: ResponsibilityStore) -> dict[str, Any]:
    """The training recipe and what was recorded, for a results file."""
    return {
        "model": cfg.model.net._target_.rsplit(".", 1)[-1],
        "optimizer": cfg.model.optimizer,
        "lr": cfg.model.lr,
        "batch_size": cfg.data.batch_size,
        "epochs": cfg.trainer.max_epochs,
        "steps": store.steps,
        "attribution": cfg.callbacks.responsibility.attribution,
        "tracked": {p: store.param(p).granularity for p in store.parameters},
    }


def write_results(out_dir: Path, results: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """``results.json`` (everything) and ``results.md`` (``markdown(results)``) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(markdown(results))


def publish(out_dir: Path, docs_dir: str | Path, names: Iterable[str]) -> None:
    """Copy the files ``names`` of ``out_dir`` that exist into ``docs_dir``."""
    docs = Path(docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (out_dir / name).is_file():
            shutil.copy2(out_dir / name, docs / name)
