"""Real training runs for the explorer's tests: Hydra runs of scripts/train.py with planted label flips."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from hydra.utils import instantiate

from responsibility.cli.run_dir import run_config
from responsibility.curation import Curation
from responsibility.experiments.datasets import find_fashion_mnist


def train(*overrides: str) -> None:
    """Run ``scripts/train.py`` with these overrides, quietly."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            *overrides,
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "print_top=null",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]


DIGITS = ("experiment=digits_quick", "data.num_samples=200", "data.label_noise=0.1", "trainer.max_epochs=2")


@pytest.fixture(scope="session")
def digits_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two runs on scikit-learn's digits (200 training examples, 20 flipped), seeds 0 and 1."""
    root = tmp_path_factory.mktemp("digits")
    # One process for both (a Hydra multirun): the imports are paid once.
    train("-m", *DIGITS, "seed=0,1", f"hydra.sweep.dir={root}", "hydra.sweep.subdir=seed${seed}")
    return root / "seed0", root / "seed1"


FASHION = (
    "data.num_samples=300",
    "data.test_samples=100",
    "data.label_noise=0.1",
    "data.batch_size=32",
    "trainer.max_epochs=2",
    "callbacks.responsibility.layers=[net.fc2]",
    "callbacks.responsibility.attribution=per_example",
)


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory) -> Path:
    """A Fashion-MNIST subset run: 300 training images (30 flipped), 100 test images, the output layer recorded
    with per-example attribution."""
    try:
        find_fashion_mnist()
    except FileNotFoundError as exc:
        pytest.skip(f"real Fashion-MNIST not available: {str(exc).splitlines()[0]}")
    run = tmp_path_factory.mktemp("fashion") / "run"
    # The README's screenshots show a run of the tour's size (2,000 training images) rather than the test's 300.
    size = ("data.num_samples=2000", "data.test_samples=500") if os.environ.get("EXPLORER_SCREENSHOTS") else ()
    train(f"hydra.run.dir={run}", *FASHION, *size)
    return run


@pytest.fixture(scope="module")
def curated(digits_runs, tmp_path_factory):
    """A curation of the seed-0 digits run, and the run trained with it through scripts/train.py."""
    root = tmp_path_factory.mktemp("curated")
    data = instantiate(run_config(argparse.Namespace(run_dir=str(digits_runs[0]), config=None)).data)
    data.setup("fit")
    cur = Curation.for_labels(data.train_set.targets.numpy(), data.num_classes, data.class_names)
    flipped = data.train_set.flipped_ids
    cur.record("relabel", flipped[:3], label=0, reason="by hand")
    cur.record("relabel", flipped[:2], label=9)
    cur.record("remove", [0, 7, 11, 12])
    cur.record("restore", [12])
    cur.record("reweight", [20, 21], factor=4.0)
    cur.record("note", [1], text="only a note")
    cur.save(root / "cur.json")
    run = root / "run"
    train(*DIGITS, f"curation={root / 'cur.json'}", f"hydra.run.dir={run}")
    return digits_runs[0], root / "cur.json", run
