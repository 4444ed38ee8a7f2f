"""A LightningModule that trains any ``nn.Module`` classifier with cross-entropy."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F

from responsibility.choices import check_choice

__all__ = ["ImageClassifier"]

Optimizer = Literal["sgd", "adam", "adamw"]
Scheduler = Literal["cosine", "step"]


class ImageClassifier(pl.LightningModule):
    """Cross-entropy classifier around ``net``; batches are ``(x, y)``, or ``(x, y, w)`` from a curated training set,
    whose per-example factors ``w`` weight the loss: ``mean_i(w_i · CE_i)``.

    Args:
        net: the network mapping images to logits.
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr, momentum, weight_decay: optimizer settings (``momentum`` applies to SGD only).
        scheduler: ``None``; ``cosine`` (annealed per step to zero over the whole fit); or ``step``
            (multiply the rate by ``gamma`` every ``step_size`` epochs).

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc``.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Optimizer = "adam",
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        scheduler: Scheduler | None = None,
        step_size: int = 1,
        gamma: float = 0.1,
    ) -> None:
        super().__init__()
        check_choice("optimizer", optimizer, Optimizer)
        if scheduler is not None:
            check_choice("scheduler", scheduler, Scheduler)
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.save_hyperparameters(ignore=["net"])
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _shared_step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        # (x, y), or (x, y, w) from a curated training set: w multiplies each example's loss.
        x, y, *weight = batch
        logits = self(x)
        if weight:
            loss = (F.cross_entropy(logits, y, reduction="none") * weight[0]).mean()
        else:
            loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(dim=1) == y).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log(f"{stage}/acc", acc, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams  # a mapping with attribute access: the saved __init__ arguments
        params = self.parameters()
        opt: torch.optim.Optimizer
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler is None:
            return opt
        if hp.scheduler == "cosine":
            total = self.trainer.estimated_stepping_batches
            if not math.isfinite(total):
                raise ValueError("scheduler 'cosine' needs a finite max_epochs or max_steps on the Trainer")
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(total)))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=hp.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
