"""Trainers for benchmarks and evaluation scripts: CPU, no logging, checkpoints, progress bars or summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L


def quiet_trainer(max_epochs: int, callbacks: Sequence[L.Callback] = (), **overrides: Any) -> L.Trainer:
    """A Trainer whose wall time is training alone (nothing written besides what the callbacks write)."""
    options: dict[str, Any] = dict(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(callbacks=list(callbacks), **(options | overrides))
