"""conf/: every entry config composes (alone and with each of its experiments), resolves and instantiates; the
responsibility callback is configured under one key path, callbacks.responsibility, with every argument."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from helpers import CONF
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from responsibility.callbacks import ResponsibilityCallback

ENTRIES = sorted(p.stem for p in CONF.glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# The entry point each experiment belongs to, by its name (conf/experiment/<prefix>*.yaml); the rest are train's.
OWNER = {"eval_": "evaluate", "paper_": "paper", "shortcut_": "shortcut"}
RECORDING = ["train", "evaluate", "paper", "shortcut"]  # the entry points that record with the callback


def _compose(entry: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=entry, overrides=list(overrides))


def _owner(experiment: str) -> str:
    return next((entry for prefix, entry in OWNER.items() if experiment.startswith(prefix)), "train")


def test_the_entry_configs_are_the_scripts():
    assert ENTRIES == ["bench", "evaluate", "paper", "shortcut", "train"]
    assert {_owner(e) for e in EXPERIMENTS} == {"train", "evaluate", "paper", "shortcut"}


@pytest.mark.parametrize("entry, experiment", [(e, None) for e in ENTRIES] + [(_owner(x), x) for x in EXPERIMENTS])
def test_entry_config_composes_resolves_and_instantiates(entry: str, experiment: str | None, tmp_path: Path):
    overrides = [f"paths.output_dir={tmp_path}"] + ([f"experiment={experiment}"] if experiment else [])
    cfg = _compose(entry, *overrides)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    if entry == "bench":
        assert cfg.bench.script.startswith("bench_")
        return
    dm = instantiate(cfg.data)
    model = instantiate(cfg.model)
    logits = model(torch.zeros(2, dm.in_channels, dm.image_size, dm.image_size))
    assert logits.shape == (2, dm.num_classes)
    # The callback from its one config file; the paper pipeline chooses a store per training seed.
    store = {"store": str(tmp_path / "r.zarr")} if cfg.callbacks.responsibility.store is None else {}
    callback = instantiate(cfg.callbacks.responsibility, **store, _convert_="all")
    assert isinstance(callback, ResponsibilityCallback)
    trainer = instantiate(cfg.trainer, callbacks=[callback])
    assert trainer.max_epochs == cfg.trainer.max_epochs


def test_the_callback_config_file_holds_every_argument_with_its_default():
    """conf/callbacks/responsibility.yaml: one entry per ResponsibilityCallback argument, the same default."""
    entry = OmegaConf.load(CONF / "callbacks" / "responsibility.yaml").responsibility
    params = inspect.signature(ResponsibilityCallback).parameters
    assert set(entry) - {"_target_"} == set(params)
    for name, p in params.items():
        if name != "store":  # required: the run directory's store
            assert entry[name] == p.default, name


@pytest.mark.parametrize("entry", RECORDING)
def test_one_key_path_for_the_callback_in_every_entry_point(entry: str):
    """Every callback argument overrides as callbacks.responsibility.<argument>, and nothing else configures it."""
    cfg = _compose(
        entry,
        "paths.output_dir=/tmp/x",
        "callbacks.responsibility.attribution=per_example",
        "callbacks.responsibility.overwrite=true",
        "callbacks.responsibility.fold_budget_mb=64",
        "trainer.max_epochs=7",
    )
    c = cfg.callbacks.responsibility
    assert (c.attribution, c.overwrite, c.fold_budget_mb, cfg.trainer.max_epochs) == ("per_example", True, 64, 7)
    for stale in ("responsibility", "attribution", "max_epochs"):  # the old second key paths are gone
        assert stale not in cfg, stale


def test_pipelines_record_as_before():
    """The evaluation pipelines keep the paper's uniform rule, a fold at fit end and a fresh store per run."""
    for entry in ("evaluate", "paper", "shortcut"):
        c = _compose(entry, "paths.output_dir=/tmp/x").callbacks.responsibility
        assert (c.attribution, c.fold, c.overwrite) == ("uniform", "always", True), entry
    ev = _compose("evaluate", "paths.output_dir=/tmp/x", "results_dir=/tmp/r")
    assert ev.callbacks.responsibility.store == "/tmp/r/responsibility.zarr"
    assert dict(ev.callbacks.responsibility.granularity) == {"*": "weight", "net.fc1": "neuron"}
