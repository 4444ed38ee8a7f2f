"""One recorded run as the explorer sees it: a Hydra run directory of ``scripts/train.py``, read lazily.

A run directory holds ``.hydra/config.yaml``, ``checkpoints/last.ckpt`` and the store (``responsibility.zarr``);
with planted label noise also ``flipped_ids.npy`` and ``class_names.json``; a run trained with a curation also
``applied_curation.json`` (the curation as it was when training started). The explorer never modifies the store,
the dataset or the checkpoint: it writes only its cache (``.explorer/``) and the working curation
(``curation.json``) that the next retrain applies.

Everything is loaded on first use, so opening a run takes milliseconds; the data module, model and store are then
kept for the session.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from responsibility.cli.run_dir import build_model, default_store, load_checkpoint, run_config
from responsibility.curation import APPLIED_FILE_NAME, FILE_NAME, Curation
from responsibility.explorer.cache import DiskCache, OnceCache
from responsibility.store import ResponsibilityStore

__all__ = ["Run"]


class Run:
    """A run directory: its config, data, store, model and the curation it was trained with, loaded on demand."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir).resolve()
        self.name = self.dir.name
        self.cfg = run_config(argparse.Namespace(run_dir=str(self.dir), config=None))
        store = default_store(self.cfg)
        if store is None:
            raise ValueError(f"{self.dir}: the run recorded no responsibility store (no callbacks.responsibility)")
        self.store_path = Path(store)
        if not (self.store_path / "zarr.json").is_file():
            raise FileNotFoundError(f"{self.dir}: no responsibility store at {self.store_path}")
        self.checkpoint = self.dir / "checkpoints" / "last.ckpt"
        if not self.checkpoint.is_file():
            raise FileNotFoundError(f"{self.dir}: no checkpoint at {self.checkpoint}")
        applied = self.dir / APPLIED_FILE_NAME
        self.applied: Curation | None = Curation.load(applied) if applied.is_file() else None
        self.curation_path = self.dir / FILE_NAME
        self._once = OnceCache()
        self.cache = DiskCache(self.dir / ".explorer", self._fingerprint())

    def _fingerprint(self) -> str:
        store = self.store
        ckpt = self.checkpoint.stat()
        key = f"{store.generation}:{store.steps}:{store.num_ids}:{ckpt.st_size}:{ckpt.st_mtime_ns}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def memo(self, key: str, compute: Any) -> Any:
        """A value computed once per session (in memory)."""
        return self._once.get(key, compute)

    # ------------------------------------------------------------------ what the run is made of
    @property
    def store(self) -> ResponsibilityStore:
        return self.memo("store", lambda: ResponsibilityStore.open(self.store_path))

    @property
    def datamodule(self) -> Any:
        def load() -> Any:
            from hydra.utils import instantiate

            dm = instantiate(self.cfg.data)  # the original data: a curation is applied below, not here
            dm.setup("fit")
            return dm

        return self.memo("datamodule", load)

    @property
    def model(self) -> torch.nn.Module:
        path = str(self.checkpoint)
        return self.memo("model", lambda: build_model(self.cfg, load_checkpoint(path), path))

    @property
    def class_names(self) -> list[str]:
        return [str(n) for n in self.datamodule.class_names]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_examples(self) -> int:
        return len(self.datamodule.train_set)

    @property
    def num_tests(self) -> int:
        return len(self.datamodule.test_set)

    @property
    def original_labels(self) -> np.ndarray:
        """Training labels of the data config, before any curation (with the planted noise, if any)."""
        return self.datamodule.train_set.targets.numpy()

    @property
    def clean_labels(self) -> np.ndarray:
        return self.datamodule.train_set.clean_targets.numpy()

    @property
    def labels(self) -> np.ndarray:
        """The labels this run was trained with (its applied curation's relabels included)."""

        def compute() -> np.ndarray:
            labels = self.applied.labels(self.original_labels) if self.applied else self.original_labels
            recorded = self.store.labels
            if recorded is not None and not np.array_equal(recorded, labels):
                raise ValueError(
                    f"{self.dir}: the store was recorded with other labels than the run's data config and curation "
                    "give; was the run trained from another config?"
                )
            return labels

        return self.memo("labels", compute)

    @property
    def flipped(self) -> np.ndarray:
        """Boolean mask of examples whose training label is not their true label (planted noise not fixed)."""
        return self.memo("flipped", lambda: self.labels != self.clean_labels)

    @property
    def planted_noise(self) -> bool:
        return bool((self.original_labels != self.clean_labels).any())

    @property
    def removed(self) -> np.ndarray:
        """Boolean mask of the examples this run was trained without (its applied curation's removals)."""

        def compute() -> np.ndarray:
            mask = np.zeros(self.num_examples, dtype=bool)
            if self.applied:
                mask[list(self.applied.state.removed)] = True
            return mask

        return self.memo("removed", compute)

    @property
    def weights(self) -> np.ndarray:
        """Per-example loss factors this run was trained with (1 where its curation changed nothing)."""

        def compute() -> np.ndarray:
            w = self.applied.loss_weights() if self.applied else None
            return np.ones(self.num_examples, dtype=np.float32) if w is None else w

        return self.memo("weights", compute)

    @property
    def output_params(self) -> list[str]:
        """The recorded parameters of the output layer (one unit per class), or [] if it was not recorded."""

        def find() -> list[str]:
            # The layer analysis.label_push takes by default: the last recorded one with a unit per class.
            store = self.store
            fitting = [n for n in store.parameters if store.param(n).r_shape[0] == self.num_classes]
            layer = fitting[-1].rpartition(".")[0] if fitting else None
            return [n for n in fitting if n.rpartition(".")[0] == layer]

        return self.memo("output_params", find)

    @property
    def output_weight(self) -> str | None:
        weights = [n for n in self.output_params if n.endswith("weight")]
        return weights[0] if weights else None

    def images(self, split: str) -> torch.Tensor:
        data = self.datamodule.train_set if split == "train" else self.datamodule.test_set
        return data.images

    @property
    def test_labels(self) -> np.ndarray:
        return self.datamodule.test_set.targets.numpy()

    def curation(self) -> Curation:
        """The working curation (``curation.json``), or a new one that starts from the curation this run applied."""
        if self.curation_path.is_file():
            cur = Curation.load(self.curation_path)
            cur.check_labels(self.original_labels)
            return cur
        cur = Curation.for_labels(self.original_labels, self.num_classes, self.class_names)
        if self.applied is not None:
            cur.changes = list(self.applied.changes)  # build on what made this run
        return cur

    def describe(self) -> dict[str, Any]:
        """What the app shows about the run before any view is opened."""
        return {
            "name": self.name,
            "num_examples": self.num_examples,
            "num_tests": self.num_tests,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "planted_noise": self.planted_noise,
            "curated": self.applied is not None,
            "output_layer": self.output_params,
            "steps": self.store.steps,
            "attribution": self.store.spec.attribution,
        }
