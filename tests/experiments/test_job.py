"""How the scripts run a Hydra job (responsibility.experiments.job): advice in override form, a missing dataset in a
few lines with no run directory left, Lightning's log lines once, and the main job's closing report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, write_fake_fashion
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from responsibility.errors import DatasetNotFoundError, StoreExistsError
from responsibility.experiments.job import hydra_message, hydra_value, user_error

TRAIN = str(ROOT / "scripts" / "train.py")
QUICK = ["experiment=digits_quick", "data.num_samples=64", "trainer.max_epochs=1", "print_top.k=2"]


def _train(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TRAIN, *overrides], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize(
    "value", [True, False, None, 3, 0.5, "net.fc*", ["net.conv", "net.fc2"], "a b", "it's", "s3://b/r.zarr"]
)
def test_hydra_value_is_what_hydras_parser_reads_back(value):
    parsed = OverridesParser.create().parse_override(f"key={hydra_value(value)}").value()
    assert parsed == value


def test_hydra_message_names_the_overrides():
    error = StoreExistsError("The store holds 3 steps.", fixes=[{"store": ...}, {"overwrite": True}])
    assert str(error).endswith("Settings that fix it: store=... or overwrite=True")  # the Python form
    assert hydra_message(error) == (
        "The store holds 3 steps. Settings that fix it: "
        "callbacks.responsibility.store=<value> or callbacks.responsibility.overwrite=true"
    )
    missing = DatasetNotFoundError("No data.", fixes=[{"data_dir": ...}])
    assert hydra_message(missing) == "No data. Settings that fix it: data.data_dir=<value>"


def test_user_error_is_found_behind_hydras_instantiate(tmp_path):
    cfg = {"_target_": "responsibility.experiments.datasets.find_fashion_mnist", "data_dir": str(tmp_path)}
    with pytest.raises(InstantiationException) as info:
        instantiate(cfg)
    assert isinstance(user_error(info.value), DatasetNotFoundError)
    assert user_error(ValueError("a bug")) is None


def test_missing_dataset_is_a_short_message_and_leaves_no_run_directory(tmp_path):
    (tmp_path / "mine.txt").write_text("the user's")
    out = _train(f"data.data_dir={tmp_path / 'empty'}", cwd=tmp_path)  # run directory outputs/train/<time>
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "Fashion-MNIST not found" in out.stderr
    assert "data.data_dir=<value>" in out.stderr and "FASHION_MNIST_DIR" in out.stderr
    assert len((out.stdout + out.stderr).strip().splitlines()) <= 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]  # no outputs/ left, nothing else touched


def test_main_job_output_then_store_exists_advice_that_works(tmp_path):
    run = tmp_path / "run"
    first = _train(*QUICK, f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    text = first.stdout + first.stderr
    assert text.count("`Trainer.fit` stopped") == 1  # Lightning's log lines once, not twice
    assert "it/s]" not in text  # no progress bar off a terminal
    assert "R = the part of the weight's total change" in first.stdout  # the table is explained
    assert f"responsibility query --run-dir {run} --inputs test:0,1,2" in first.stdout  # and a next step
    assert (run / "class_names.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()

    again = _train(*QUICK, f"hydra.run.dir={run}", cwd=tmp_path)  # a fresh run into the recorded store
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "callbacks.responsibility.overwrite=true" in again.stderr
    assert f"run directory kept: {run}" in again.stderr  # it holds the first run

    fixed = _train(*QUICK, f"hydra.run.dir={run}", "callbacks.responsibility.overwrite=true", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr[-2000:]


# What the test extras install beside the train extra; lightning, torch and torchmetrics import some of them when they
# are there, so they are made unimportable rather than checked for in sys.modules.
NOT_IN_TRAIN_EXTRA = ("sklearn", "matplotlib", "scipy", "cleanlab", "dask", "s3fs", "moto", "hypothesis", "pytest")
BLOCKED_RUN = """
import runpy, sys
class Absent:  # every import goes through here; the blocked packages are not found, as if not installed
    def __init__(self, finders):
        self.finders = finders
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            return None
        return next((s for f in self.finders if (s := f.find_spec(name, path, target))), None)
sys.meta_path[:] = [Absent(list(sys.meta_path))]
sys.argv = ["train.py", *{overrides!r}]
runpy.run_path({script!r}, run_name="__main__")
"""


def test_main_job_needs_only_the_train_extra(tmp_path):
    """The README's main job (Fashion-MNIST, the paper CNN, the callback) with the packages of the other extras
    unimportable, as after `pip install ".[train]"`."""
    (tmp_path / "fashion").mkdir()
    write_fake_fashion(tmp_path / "fashion", n_train=64, n_test=16)
    overrides = [f"data.data_dir={tmp_path / 'fashion'}", "data.num_samples=64", "data.test_samples=16"]
    overrides += ["trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}"]
    code = BLOCKED_RUN.format(blocked=set(NOT_IN_TRAIN_EXTRA), overrides=overrides, script=TRAIN)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Most responsible training examples for net.fc2.weight" in out.stdout
