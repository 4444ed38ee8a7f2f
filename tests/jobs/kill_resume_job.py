"""A deterministic training run with the callback, used by callbacks/test_kill_resume.py as a subprocess.

Resumes from <ckpt-dir>/last.ckpt when it exists; epoch-end checkpoints and an epoch-seeded sampler make a resumed
run train on exactly what an uninterrupted one does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning as L
import torch
from helpers import EpochSeededSampler, IndexedData, TinyNet, make_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader

from responsibility import ResponsibilityCallback


class Announce(Callback):
    def on_train_start(self, trainer, pl_module):
        print("TRAINING", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--ckpt-dir", required=True)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    last = Path(args.ckpt_dir) / "last.ckpt"
    L.seed_everything(0, verbose=False)
    torch.set_num_threads(1)
    n = 192
    cb = ResponsibilityCallback(
        args.store, attribution="uniform", journal_buffer_mb=0.002, fold="always", overwrite=not last.exists()
    )
    ckpt = ModelCheckpoint(dirpath=args.ckpt_dir, save_last=True, save_top_k=0, every_n_epochs=1)
    trainer = make_trainer(
        None, [cb, ckpt, Announce()], max_epochs=args.epochs, enable_checkpointing=True, deterministic=True
    )
    loader = DataLoader(IndexedData(n), batch_size=4, sampler=EpochSeededSampler(n))
    trainer.fit(TinyNet(hidden=32), loader, ckpt_path=str(last) if last.exists() else None)
    print("DONE", flush=True)


if __name__ == "__main__":
    sys.exit(main())
