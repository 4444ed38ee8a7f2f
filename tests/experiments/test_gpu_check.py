"""scripts/gpu_check.sh, shrunk onto the CPU (``--cpu-smoke``): every step of the prepared GPU check runs, writes
its JSON and agrees with the chronological fold, so the script a lent GPU machine runs in one short call works."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import ROOT


def test_cpu_smoke_runs_every_step_and_folds_exactly(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    run = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--cpu-smoke"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cpu_smoke"] is True
    assert summary["exit_status"] == {"cuda_tests": 0, "overhead_resnet18": 0, "fold_kernel": 0, "fold_store": 0}
    assert summary["results"]["overhead_ratio_median"] > 0
    for name in ("fold_kernel", "fold_store"):
        runs = json.loads((out / f"{name}.json").read_text())["runs"]
        assert runs
        assert all(r["bit_identical_to_chronological_cpu_fold"] for r in runs), name
    assert any(
        r["variant"].startswith("store.fold()") for r in json.loads((out / "fold_store.json").read_text())["runs"]
    )
    # The CUDA tests were collected (and skipped here), not silently missing.
    assert "skipped" in (out / "cuda_tests.log").read_text()
