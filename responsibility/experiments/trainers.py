"""Trainers for the evaluation pipelines and benchmarks, and the progress bar of the training job."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

__all__ = ["TerminalProgressBar", "quiet_trainer"]


def quiet_trainer(max_epochs: int, callbacks: Sequence[L.Callback] = (), **overrides: Any) -> L.Trainer:
    """A Trainer whose wall time is training alone: CPU, no logging, checkpoints, progress bar or model summary
    (nothing written besides what the callbacks write). ``overrides`` are further ``Trainer`` arguments."""
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


class TerminalProgressBar(TQDMProgressBar):
    """Lightning's tqdm progress bar, disabled when standard output is not a terminal: in a log file or a pipe each
    refresh would stay behind as a line of its own (hundreds per epoch)."""

    def __init__(self, refresh_rate: int = 1, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        if not sys.stdout.isatty():
            self.disable()
