"""What ``scripts/train.py`` does with a composed Hydra config: build, fit, save the run's labels, report.

The report ends the main job: for a few output units, the training examples most responsible for the unit's
largest weight, what the table's columns mean, and the command to try next.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import lightning
import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig

from responsibility.curation import APPLIED_FILE_NAME
from responsibility.experiments.datasets import ImageClassificationDataset

__all__ = [
    "TopRequest",
    "TrainRun",
    "instantiate_callbacks",
    "print_most_responsible",
    "resolve_top",
    "train",
]


class TrainRun(NamedTuple):
    datamodule: pl.LightningDataModule
    model: pl.LightningModule
    trainer: pl.Trainer


@dataclass(frozen=True)
class TopRequest:
    """Which table to print: ``k`` examples for each of the ``units`` (rows) of ``parameter``."""

    parameter: str
    units: tuple[int, ...]
    k: int


def instantiate_callbacks(callbacks_cfg: DictConfig | None) -> list[pl.Callback]:
    """Instantiate every entry of the ``callbacks`` group that has a ``_target_``.

    Containers become plain lists and dicts, so callbacks see (and checkpoint) ordinary Python values.
    """
    if not callbacks_cfg:
        return []
    return [instantiate(c, _convert_="all") for c in callbacks_cfg.values() if c and "_target_" in c]


def resolve_top(model: torch.nn.Module, top_cfg: DictConfig | None) -> TopRequest | None:
    """Check ``print_top`` against the model before training, so a typo fails fast.

    ``parameter: null`` means the model's last ``*.weight`` (the output layer of the experiment networks).
    """
    if not top_cfg:
        return None
    params = dict(model.named_parameters())
    name = top_cfg.get("parameter")
    if name is None:
        weights = [n for n in params if n.endswith(".weight")]
        if not weights:
            raise ValueError("print_top.parameter is null but the model has no '*.weight' parameter")
        name = weights[-1]
    if name not in params or params[name].ndim == 0:
        raise ValueError(
            f"print_top.parameter={name!r} is not a non-scalar parameter of the model; it has {list(params)}"
        )
    rows = params[name].shape[0]
    units = tuple(int(u) for u in top_cfg.get("units", [0]))
    bad = [u for u in units if not 0 <= u < rows]
    if bad:
        raise ValueError(f"print_top.units {bad} out of range for {name} with {rows} rows")
    k = int(top_cfg.get("k", 5))
    if k < 1:
        raise ValueError(f"print_top.k must be positive, got {k}")
    return TopRequest(name, units, k)


def _responsibility_store(callbacks_cfg: DictConfig | None) -> str | None:
    entry = callbacks_cfg.get("responsibility") if callbacks_cfg else None
    return str(entry.store) if entry and "_target_" in entry else None


def save_labels(dataset: ImageClassificationDataset, output_dir: Path) -> None:
    """Write the class names (``class_names.json``, read by ``responsibility query``) and, when label noise flipped
    some training labels, their ids (``flipped_ids.npy``)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "class_names.json").write_text(json.dumps(dataset.class_names))
    if len(dataset.flipped_ids):
        np.save(output_dir / "flipped_ids.npy", dataset.flipped_ids)


TABLE_HELP = """\
For each unit: the unit's largest weight (by |w|), and the training examples whose optimizer steps changed that
weight the most. R = the part of the weight's total change |Δw| over training credited to the example (the
callback's attribution says how a step's change is shared among its batch). Columns: id = position in this run's
training set; source = index in the original dataset; label = the label trained on; true label = the clean label,
marked "flipped" where label noise changed it."""


def print_most_responsible(
    store: Any, request: TopRequest, weight: torch.Tensor, dataset: ImageClassificationDataset
) -> None:
    """Print, for each requested unit, the k training examples most responsible for its largest-|w| weight.

    ``store.most_responsible(name, k)`` returns ``(ids, values)`` of shape ``(k, *r_shape)``; for a parameter
    recorded per neuron ``r_shape`` is ``(rows,)`` and the unit's row is used.
    """
    ids, values = (np.asarray(a) for a in store.most_responsible(request.parameter, k=request.k))
    w = weight.detach().cpu()
    label_units = w.shape[0] == dataset.num_classes
    per_neuron = ids.ndim == 2
    header = f"  {'rank':>4}  {'id':>7}  {'source':>7}  {'label':<14}  {'true label':<24}  {'R':>12}"
    print(f"\nMost responsible training examples for {request.parameter} (shape {tuple(w.shape)})")
    print(TABLE_HELP)
    if per_neuron:
        print("This parameter is recorded per neuron: R is the sum over all of the unit's weights.")
    for u in request.units:
        index = (u, *(int(i) for i in np.unravel_index(int(w[u].abs().argmax()), tuple(w[u].shape))))
        cell = index[: ids.ndim - 1]
        title = f"unit {u}" + (f" ({dataset.class_names[u]})" if label_units else "")
        print(f"\n{title}: largest weight {request.parameter}{list(index)} = {float(w[index]):+.4f}")
        print(header)
        column: tuple[slice | int, ...] = (slice(None), *cell)
        for rank, (i, v) in enumerate(zip(ids[column], values[column], strict=True), start=1):
            if i < 0:  # fewer than k examples reached this cell
                continue
            label = dataset.class_names[int(dataset.targets[i])]
            clean = dataset.class_names[int(dataset.clean_targets[i])]
            clean += " (flipped)" if clean != label else ""
            print(f"  {rank:>4}  {i:>7}  {dataset.source_indices[i]:>7}  {label:<14}  {clean:<24}  {v:>12.6g}")


def print_next_steps(run_dir: Path, store: str | None) -> None:
    """Where the run is, and the command to try next."""
    print(f"\nRun directory: {run_dir}")
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if store is not None and Path(store).exists() and checkpoint.is_file():
        print("Next, explain some test predictions by their most responsible training examples:")
        print(f"  responsibility query --run-dir {run_dir} --inputs test:0,1,2 -k 5")
        print("or explore the run, fix its data and retrain, in the browser", end="")
        print(' (pip install -c constraints.txt -e ".[explore]"):')
        print(f"  responsibility explore {run_dir}")
    elif store is not None and Path(store).exists():
        print(f"Next, see what was recorded:\n  responsibility inspect {store}")


def train(cfg: DictConfig) -> TrainRun:
    """Seed, instantiate data, model, callbacks and trainer from ``cfg``, fit, then save and report."""
    lightning.seed_everything(cfg.seed, workers=True, verbose=False)
    # A curation (relabel, remove, reweight; responsibility.curation) is read and checked here, before training.
    datamodule = instantiate(cfg.data, curation=cfg.get("curation"))
    datamodule.prepare_data()  # missing data fail here, before anything is built or written
    model = instantiate(cfg.model)
    top = resolve_top(model, cfg.get("print_top"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress bar it was told not to show
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks)
    if datamodule.curation is not None and trainer.is_global_zero:
        # What this run is trained with, even if the curation file is edited later (the explorer reads this copy).
        Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
        datamodule.curation.save(Path(cfg.paths.output_dir) / APPLIED_FILE_NAME)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    if trainer.is_global_zero:
        dataset = datamodule.train_set
        run_dir = Path(cfg.paths.output_dir)
        save_labels(dataset, run_dir)
        store_path = _responsibility_store(cfg.get("callbacks"))
        if store_path is not None and top is not None:
            from responsibility import ResponsibilityStore

            store = ResponsibilityStore.open(store_path)
            print_most_responsible(store, top, model.get_parameter(top.parameter), dataset)
        print_next_steps(run_dir, store_path)
    return TrainRun(datamodule, model, trainer)
