"""Tests of the experiment side: data modules, the classifier, the Hydra configs and the training pipeline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from helpers import ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from responsibility.experiments.classifier import ImageClassifier
from responsibility.experiments.datamodules import DigitsDataModule, FashionMNISTDataModule
from responsibility.experiments.datasets import ImageClassificationDataset, find_fashion_mnist
from responsibility.experiments.models import PaperCNN
from responsibility.experiments.train import (
    TopRequest,
    instantiate_callbacks,
    print_most_responsible,
    resolve_top,
    train,
)

CONF_DIR = ROOT / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
QUIET_TRAINER = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _quick_cfg(tmp_path: Path, *overrides: str):
    return _compose(
        "experiment=digits_quick",
        f"paths.output_dir={tmp_path}",
        "data.num_samples=64",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        *QUIET_TRAINER,
        *overrides,
    )


# ---------------------------------------------------------------------------------------------------- data


def test_digits_datamodule_is_deterministic_and_loads_x_y_batches() -> None:
    def built(seed: int) -> DigitsDataModule:
        dm = DigitsDataModule(num_samples=100, label_noise=0.2, batch_size=16, seed=seed, classes=[3, 8, 1])
        dm.setup("fit")
        return dm

    a, b, c = built(0), built(0), built(1)
    assert a.num_classes == 3 and a.image_size == 8 and a.in_channels == 1
    assert a.train_set.class_names == ["3", "8", "1"] and len(a.train_set) == 100
    assert torch.equal(a.train_set.targets, b.train_set.targets)
    np.testing.assert_array_equal(a.train_set.flipped_ids, b.train_set.flipped_ids)
    assert len(a.train_set.flipped_ids) == 20
    assert not np.array_equal(a.train_set.source_indices, c.train_set.source_indices)
    assert len(a.test_set.flipped_ids) == 0  # no noise on the evaluation split
    assert set(a.test_set.clean_targets.tolist()) == {0, 1, 2}

    loader = a.train_dataloader()
    assert type(loader) is DataLoader and loader.dataset is a.train_set
    assert isinstance(loader.sampler, torch.utils.data.RandomSampler)
    x, y = next(iter(loader))
    assert x.shape == (16, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.int64
    assert isinstance(a.val_dataloader().sampler, torch.utils.data.SequentialSampler)


def test_datamodule_checks_configured_geometry() -> None:
    DigitsDataModule(classes=[0, 1], num_classes=2, image_size=8, in_channels=1)
    with pytest.raises(ValueError, match="num_classes=10 was configured but the data gives 2"):
        DigitsDataModule(classes=[0, 1], num_classes=10)
    with pytest.raises(ValueError, match="image_size"):
        FashionMNISTDataModule(image_size=8)
    with pytest.raises(ValueError, match="class id 12"):
        DigitsDataModule(classes=[0, 12])
    with pytest.raises(RuntimeError, match="setup"):
        DigitsDataModule().train_dataloader()


def test_fashion_datamodule_missing_data(tmp_path: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        dm.setup("fit")


def test_fashion_datamodule_tshirt_vs_shirt() -> None:
    try:
        find_fashion_mnist()
    except FileNotFoundError as e:
        pytest.skip(f"real Fashion-MNIST not available: {str(e).splitlines()[0]}")
    dm = FashionMNISTDataModule(classes=[0, 6], num_samples=200, test_samples=50, label_noise=0.1, seed=0)
    dm.setup("fit")
    ds = dm.train_set
    assert ds.class_names == ["T-shirt/top", "Shirt"] and len(ds) == 200 and len(dm.test_set) == 50
    assert len(ds.flipped_ids) == 20
    assert ds.images.shape == (200, 1, 28, 28) and 0.0 <= float(ds.images.min()) < float(ds.images.max()) <= 1.0


# ---------------------------------------------------------------------------------------------------- model


def test_classifier_validates_options() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        ImageClassifier(PaperCNN(), optimizer="rmsprop")
    with pytest.raises(ValueError, match="scheduler"):
        ImageClassifier(PaperCNN(), scheduler="linear")
    model = ImageClassifier(PaperCNN(), optimizer="sgd", lr=0.1, momentum=0.9)
    assert "net" not in model.hparams and model.hparams.momentum == 0.9
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9


@pytest.mark.parametrize("optimizer, scheduler", [("sgd", "step"), ("adamw", "cosine")])
def test_classifier_fits_and_lowers_loss(optimizer: str, scheduler: str, tmp_path: Path) -> None:
    pl.seed_everything(0)
    dm = DigitsDataModule(num_samples=256, batch_size=32)
    model = ImageClassifier(PaperCNN(image_size=8), optimizer=optimizer, lr=0.05, scheduler=scheduler)
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    dm.setup("fit")
    x, y = dm.test_set.images, dm.test_set.targets
    before = torch.nn.functional.cross_entropy(model(x), y).item()
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 24
    assert trainer.callback_metrics["val/loss"].item() < before
    assert 0.0 <= trainer.callback_metrics["val/acc"].item() <= 1.0


# ---------------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("model", ["paper_cnn", "lenet5"])
def test_every_experiment_composes_and_instantiates(experiment: str, model: str, tmp_path: Path) -> None:
    cfg = _compose(f"experiment={experiment}", f"model={model}", f"paths.output_dir={tmp_path}")
    OmegaConf.resolve(cfg)
    dm = instantiate(cfg.data)
    net = instantiate(cfg.model).net
    logits = net(torch.zeros(2, dm.in_channels, dm.image_size, dm.image_size))
    assert logits.shape == (2, dm.num_classes)
    assert cfg.callbacks.responsibility.store == f"{tmp_path}/responsibility.zarr"
    assert cfg.trainer.default_root_dir == str(tmp_path)


def test_experiment_settings() -> None:
    tshirt = _compose("experiment=fashion_tshirt_shirt").data
    assert (list(tshirt.classes), tshirt.num_samples, tshirt.label_noise, tshirt.batch_size) == ([0, 6], 1000, 0.1, 32)
    full = _compose("experiment=fashion_full")
    assert full.data.num_samples is None and full.data.label_noise == 0.1 and full.data.batch_size == 64
    # Merged into the main job's mapping (Hydra merges mappings): neurons everywhere, weights of the output layer.
    granularity = dict(full.callbacks.responsibility.granularity)
    assert granularity == {"*": "neuron", "net.fc1": "neuron", "net.fc2": "weight"}
    assert _compose().callbacks.responsibility.granularity == {"*": "weight", "net.fc1": "neuron"}
    assert _compose("callbacks.responsibility.granularity=neuron").callbacks.responsibility.granularity == "neuron"


def test_callbacks_group(tmp_path: Path) -> None:
    from responsibility.callbacks import ResponsibilityCallback

    cfg = _compose("experiment=fashion_full", f"paths.output_dir={tmp_path}")
    made = instantiate_callbacks(cfg.callbacks)
    assert [type(c).__name__ for c in made] == ["ResponsibilityCallback", "ModelCheckpoint", "TerminalProgressBar"]
    assert isinstance(made[0], ResponsibilityCallback)
    assert made[0].granularity == {"*": "neuron", "net.fc1": "neuron", "net.fc2": "weight"}
    assert made[1].dirpath == str(tmp_path / "checkpoints") and made[1].save_last
    # An experiment that sets callback options under callbacks=none leaves an entry without _target_.
    assert instantiate_callbacks(_compose("experiment=fashion_full", "callbacks=none").callbacks) == []


# ---------------------------------------------------------------------------------------------------- pipeline


def test_pipeline_trains_deterministically_and_saves_label_noise(tmp_path: Path) -> None:
    first = train(_quick_cfg(tmp_path / "a", "callbacks=none"))
    second = train(_quick_cfg(tmp_path / "b", "callbacks=none"))
    assert first.trainer.global_step == 2
    for (name, p), q in zip(first.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    flipped = np.load(tmp_path / "a" / "flipped_ids.npy")
    np.testing.assert_array_equal(flipped, first.datamodule.train_set.flipped_ids)
    assert len(flipped) == round(0.1 * 64)
    assert (tmp_path / "a" / "class_names.json").read_text() == '["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]'
    assert not (tmp_path / "a" / "responsibility.zarr").exists()


def test_pipeline_records_and_prints_most_responsible(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from responsibility import ResponsibilityStore

    run = train(_quick_cfg(tmp_path, "print_top.units=[4]", "print_top.k=2"))
    out = capsys.readouterr().out
    assert "Most responsible training examples for net.fc2.weight (shape (10, 128))" in out
    w = run.model.net.fc2.weight.detach()
    j = int(w[4].abs().argmax())
    assert f"unit 4 (4): largest weight net.fc2.weight[4, {j}]" in out
    ids, _ = ResponsibilityStore.open(tmp_path / "responsibility.zarr").most_responsible("net.fc2.weight", k=2)
    rows = out.split(f"[4, {j}]", 1)[1].splitlines()[2:4]
    assert [int(r.split()[1]) for r in rows] == ids[:, 4, j].tolist()


def test_per_example_sgd_experiment_derives_every_step(tmp_path: Path) -> None:
    """experiment=per_example_sgd (on digits, for speed): plain SGD, so every parameter step journals its scale."""
    from responsibility import ResponsibilityStore

    cfg = _compose(
        "experiment=per_example_sgd",
        "data=digits",
        "data.num_samples=64",
        "trainer.max_epochs=1",
        "+trainer.limit_val_batches=1",
        f"paths.output_dir={tmp_path}",
        "print_top=null",
        *QUIET_TRAINER,
    )
    train(cfg)
    store = ResponsibilityStore.open(tmp_path / "responsibility.zarr")
    assert store.spec.attribution == "per_example" and store.layout.journal_delta == "derived"
    scales = store.journal_scales()
    assert scales is not None and scales.shape == (store.steps, 6) and np.isfinite(scales).all()
    assert store.param("net.fc1.weight").granularity == "neuron"  # the main job's mapping, merged


def test_a_derived_journal_with_adam_says_which_setting_fixes_it(tmp_path: Path) -> None:
    from responsibility import OptimizerMismatchError

    cfg = _quick_cfg(tmp_path, "callbacks.responsibility.journal_delta=derived", "model.optimizer=adam")
    with pytest.raises(OptimizerMismatchError, match="needs plain SGD") as caught:
        train(cfg)
    assert caught.value.fixes == ({"journal_delta": "stored"},)
    assert not (tmp_path / "responsibility.zarr").exists()


def test_resolve_top_checks_before_training() -> None:
    model = ImageClassifier(PaperCNN(num_classes=3))
    assert resolve_top(model, OmegaConf.create({"parameter": None, "units": [2], "k": 4})) == TopRequest(
        "net.fc2.weight", (2,), 4
    )
    assert resolve_top(model, None) is None
    with pytest.raises(ValueError, match="out of range"):
        resolve_top(model, OmegaConf.create({"parameter": None, "units": [3]}))
    with pytest.raises(ValueError, match="fc9.weight"):
        resolve_top(model, OmegaConf.create({"parameter": "fc9.weight"}))


class _FakeStore:
    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids

    def most_responsible(self, name: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.ids[:k], np.linspace(1.0, 0.5, self.ids.size).reshape(self.ids.shape)[:k]


def _table_ids(out: str, title: str) -> list[int]:
    block = out.split(title, 1)[1].split("\n\n")[0].splitlines()[2:]
    return [int(line.split()[1]) for line in block]


def test_print_most_responsible_reads_the_largest_weight_cell(capsys: pytest.CaptureFixture) -> None:
    dataset = ImageClassificationDataset(
        np.zeros((6, 2, 2)), [0, 1, 0, 1, 0, 1], ["cat", "dog"], targets=[0, 1, 1, 1, 0, 1]
    )
    weight = torch.tensor([[0.1, -0.9, 0.2], [0.5, 0.0, -0.4]])
    ids = np.full((3, 2, 3), -1)
    ids[:, 0, 1] = [2, 5, 0]  # unit 0: |w| is largest at column 1
    ids[:, 1, 0] = [4, 1, -1]  # unit 1: column 0; only two examples reached it
    print_most_responsible(_FakeStore(ids), TopRequest("net.fc2.weight", (0, 1), 3), weight, dataset)
    out = capsys.readouterr().out
    assert _table_ids(out, "unit 0 (cat)") == [2, 5, 0]
    assert _table_ids(out, "unit 1 (dog)") == [4, 1]
    assert "dog             cat (flipped)" in out  # example 2: trained as dog, really cat

    # Recorded per neuron: one R column per row.
    print_most_responsible(_FakeStore(np.array([[3, 4], [0, 5]])), TopRequest("w", (1,), 2), weight, dataset)
    assert _table_ids(capsys.readouterr().out, "unit 1 (dog)") == [4, 5]


def test_script_composes_from_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "experiment=digits_quick", "--cfg", "job"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    job = OmegaConf.create(result.stdout)
    assert (
        job.task_name == "digits_quick"
        and job.data._target_ == "responsibility.experiments.datamodules.DigitsDataModule"
    )
