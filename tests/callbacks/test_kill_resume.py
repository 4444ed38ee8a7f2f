"""SIGKILL a real training process at random moments, resume from its last checkpoint: the store must end up
identical, bit for bit, to the store of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from helpers import KILL_RESUME_JOB, all_arrays

from responsibility import ResponsibilityStore

JOB = KILL_RESUME_JOB


def run_job(store: Path, ckpt: Path, kill_after: float | None = None) -> tuple[bool, float]:
    """Run the job; with ``kill_after``, SIGKILL it that many seconds after training starts.

    Returns (finished normally, seconds from the start of training to the end of the process).
    """
    env = {**os.environ, "PYTHONPATH": str(JOB.parents[1]), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(JOB), "--store", str(store), "--ckpt-dir", str(ckpt)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        for line in proc.stdout:  # wait until training (not imports) is under way
            if "TRAINING" in line or "DONE" in line:
                break
        start = time.perf_counter()
        if kill_after is not None:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=300)
        return proc.returncode == 0, time.perf_counter() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_store(tmp_path):
    finished, duration = run_job(tmp_path / "ref.zarr", tmp_path / "ref_ckpt")
    assert finished
    reference = all_arrays(tmp_path / "ref.zarr")
    assert ResponsibilityStore.open(tmp_path / "ref.zarr").steps == 6 * 48

    rng = random.Random(1234)
    kills = []
    for trial in range(3):
        store, ckpt = tmp_path / f"t{trial}.zarr", tmp_path / f"t{trial}_ckpt"
        # Kill up to twice per trial, at random moments of training, flushing, checkpointing or folding.
        for _ in range(2):
            at = rng.uniform(0.05, 0.8) * duration
            finished, _ = run_job(store, ckpt, kill_after=at)
            if finished:
                break
            kills.append(round(at, 3))
        else:
            assert run_job(store, ckpt)[0]
        got = all_arrays(store)
        assert got.keys() == reference.keys()
        for key in reference:
            np.testing.assert_array_equal(got[key], reference[key], err_msg=f"trial {trial}: {key}")
    print(f"killed at {kills} s after training started (uninterrupted training took {duration:.2f} s)")
    assert len(kills) >= 2  # the test really interrupted runs (a resumed run may finish before its kill)
