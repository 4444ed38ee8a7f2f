"""Real training runs for the explorer's tests: Hydra runs of scripts/train.py with planted label flips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT


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
