"""MarginCallback: per-example margins at every training epoch (for AUM), and epoch checkpoints (for TracIn).

At the end of each training epoch the callback runs the model over the whole training set in eval mode, without
gradients, and stores each example's margin (logit of its training label minus the largest other logit). The
original AUM implementation (Pleiss et al.) reads the logits of the training forward passes instead; an
end-of-epoch pass costs one inference epoch but sees every example under the same weights and no dropout.
With ``keep_checkpoints=True`` it also keeps a CPU copy of the module's ``state_dict`` and the optimizer's
learning rate at each epoch end: the checkpoints of TracInCP.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from responsibility.evaluation.peers import margins

__all__ = ["MarginCallback"]


class MarginCallback(Callback):
    """Record ``margins`` (epochs, N) of the training examples, and optionally epoch-end checkpoints.

    Args:
        dataset: map-style dataset of ``(input, label)`` pairs; ``None`` = the trainer's training dataset.
        batch_size: batch size of the end-of-epoch inference pass.
        keep_checkpoints: also keep ``(state_dict, lr)`` of every epoch end in ``checkpoints``.
    """

    def __init__(self, dataset: Dataset | None = None, batch_size: int = 1024, keep_checkpoints: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.keep_checkpoints = keep_checkpoints
        self.history: list[np.ndarray] = []
        self.checkpoints: list[tuple[dict[str, torch.Tensor], float]] = []

    @property
    def margins(self) -> np.ndarray:
        """(epochs, N) margins, one row per finished training epoch."""
        if not self.history:
            raise RuntimeError("no training epoch has finished: no margins recorded")
        return np.stack(self.history)

    def _dataset(self, trainer: pl.Trainer) -> Dataset:
        if self.dataset is not None:
            return self.dataset
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if dataset is None:
            raise ValueError("MarginCallback could not find the training dataset: pass dataset=...")
        return dataset

    @override
    @torch.no_grad()
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = DataLoader(self._dataset(trainer), batch_size=self.batch_size, shuffle=False)
        was_training = pl_module.training
        pl_module.eval()
        try:
            logits, labels = [], []
            for x, y in loader:
                logits.append(pl_module(x.to(pl_module.device)).detach().float().cpu())
                labels.append(torch.as_tensor(y))
        finally:
            pl_module.train(was_training)
        self.history.append(margins(torch.cat(logits), torch.cat(labels)))
        if self.keep_checkpoints:
            state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
            self.checkpoints.append((state, float(trainer.optimizers[0].param_groups[0]["lr"])))
