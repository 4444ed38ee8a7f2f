"""Retrain a run with its working curation: ``python -m responsibility.explorer.retrain SOURCE_RUN NEW_RUN``.

The explorer runs this in a subprocess. It takes the source run's composed config (``.hydra/config.yaml``: same
data, subset, seed, model and trainer, so example ids and the test set line up), sets ``curation`` to the source's
``curation.json``, and trains into ``NEW_RUN`` through the same function as ``python scripts/train.py
curation=PATH`` (:func:`responsibility.experiments.train.train`). ``NEW_RUN/.hydra/config.yaml`` and
``overrides.yaml`` record how to train it again by hand. Progress goes to ``NEW_RUN/.explorer/progress.json``
(:class:`ProgressFile`), which the explorer shows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from responsibility.cli.run_dir import run_config
from responsibility.curation import FILE_NAME
from responsibility.explorer.jobs import PROGRESS_FILE


class ProgressFile(Callback):
    """Writes ``{"step", "total", "epoch", "max_epochs", "done"}`` to ``path`` (atomically, at most every
    ``every_s`` seconds) so that another process can show a progress bar."""

    def __init__(self, path: str, every_s: float = 0.5) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self._last = 0.0

    def _write(self, trainer: pl.Trainer, done: bool = False) -> None:
        total = trainer.estimated_stepping_batches
        doc = {
            "step": int(trainer.global_step),
            "total": int(total) if total != float("inf") else None,
            "epoch": int(trainer.current_epoch),
            "max_epochs": trainer.max_epochs,
            "done": done,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.path)
        self._last = time.monotonic()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self._write(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, done=True)


def retrain_config(source: Path, target: Path) -> tuple[Any, list[str]]:
    """The source run's config set up to train into ``target`` with the source's curation; and the overrides
    that reproduce it with ``scripts/train.py``."""
    from omegaconf import OmegaConf

    cfg = run_config(argparse.Namespace(run_dir=str(source), config=None))
    curation = source / FILE_NAME
    OmegaConf.update(cfg, "curation", str(curation), force_add=True)
    OmegaConf.update(cfg, "ckpt_path", None, force_add=True)
    OmegaConf.update(cfg, "paths.output_dir", str(target), force_add=True)
    overrides_file = source / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
    overrides = [o for o in overrides if not o.startswith(("curation=", "hydra.run.dir=", "ckpt_path="))]
    return cfg, [*overrides, f"curation={curation}", f"hydra.run.dir={target}"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m responsibility.explorer.retrain", description=__doc__)
    parser.add_argument("source", type=Path, help="the run whose curation.json to train with")
    parser.add_argument("target", type=Path, help="the new run directory (may exist, empty but for retrain.log)")
    args = parser.parse_args(argv)
    from omegaconf import OmegaConf

    from responsibility.experiments.job import log_once, user_error
    from responsibility.experiments.train import train

    cfg, overrides = retrain_config(args.source.resolve(), args.target.resolve())
    hydra_dir = args.target / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, hydra_dir / "config.yaml")
    OmegaConf.save(OmegaConf.create(overrides), hydra_dir / "overrides.yaml")
    # Added after saving: the progress file is for the explorer, not part of the run's recipe.
    progress = {"_target_": "responsibility.explorer.retrain.ProgressFile", "path": str(args.target / PROGRESS_FILE)}
    OmegaConf.update(cfg, "callbacks.explorer_progress", progress, force_add=True)
    OmegaConf.update(cfg, "trainer.enable_progress_bar", False, force_add=True)
    log_once()
    try:
        train(cfg)
    except Exception as error:
        cause = user_error(error)  # a bad curation or setting: its message, not a traceback
        if cause is None:
            raise
        print(f"Error: {cause}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
