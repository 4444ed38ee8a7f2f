"""What the experiment entry points (``evaluate``, ``paper``, ``shortcut``) share: phase clocks, CSV tables,
figures, the record of a run's set-up, and publishing results to ``docs/``."""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from responsibility.store import ResponsibilityStore

__all__ = ["Clock", "publish", "pyplot", "run_setup", "write_csv"]


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


def write_csv(path: Path, rows: list[dict[str, Any]], fieldnames: list[str] | None = None) -> None:
    """Rows as CSV, floats to 6 significant digits (``results.json`` keeps full precision)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or (list(rows[0]) if rows else ["empty"]))
        writer.writeheader()
        writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in rows)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (imported on first use: plotting is optional work)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_setup(cfg: DictConfig, store: ResponsibilityStore) -> dict[str, Any]:
    """The training recipe and what was recorded, for a results file."""
    return {
        "model": cfg.model.net._target_.rsplit(".", 1)[-1],
        "optimizer": cfg.model.optimizer,
        "lr": cfg.model.lr,
        "batch_size": cfg.data.batch_size,
        "epochs": cfg.max_epochs,
        "steps": store.steps,
        "attribution": cfg.attribution,
        "tracked": {p: store.param(p).granularity for p in store.parameters},
    }


def publish(out_dir: Path, docs_dir: str | Path, names: Iterable[str]) -> None:
    """Copy the files ``names`` of ``out_dir`` that exist into ``docs_dir``."""
    docs = Path(docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (out_dir / name).is_file():
            shutil.copy2(out_dir / name, docs / name)
