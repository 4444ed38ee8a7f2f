"""Opening a store while a training process writes it gives the last committed state, never a half-made one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
from helpers import KILL_RESUME_JOB as JOB

from responsibility import ResponsibilityStore


def naive_fold(store: ResponsibilityStore, name: str) -> np.ndarray:
    """R_abs of a weight-granularity parameter from the store's own journal, the slow obvious way (float64)."""
    delta = store.param_rows(name)["delta"].astype(np.float64)
    ids, counts = store.membership()
    r = np.zeros((store.num_examples, delta.shape[1]))
    for step, members in enumerate(np.split(ids, np.cumsum(counts)[:-1])):
        for m in members:
            r[m] += np.abs(delta[step])
    return r


def test_reader_sees_only_committed_consistent_states(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(JOB.parents[1]), "PYTHONUNBUFFERED": "1"}
    path = tmp_path / "s.zarr"
    proc = subprocess.Popen(
        [sys.executable, str(JOB), "--store", str(path), "--ckpt-dir", str(tmp_path / "ckpt")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    seen: list[int] = []
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if not (path / "zarr.json").exists():
                time.sleep(0.05)
                continue
            store = ResponsibilityStore.open(path)
            steps = store.steps
            ids, counts = store.membership()
            assert len(counts) == steps and len(ids) == store.num_ids == 4 * steps
            assert ((ids >= 0) & (ids < store.num_examples)).all()
            if steps:
                r = store.read("net.2.weight").reshape(store.num_examples, -1)
                np.testing.assert_allclose(r, naive_fold(store, "net.2.weight"), rtol=1e-5, atol=1e-9)
            assert not seen or steps >= seen[-1]  # commits only move forward in a fresh run
            seen.append(steps)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0
    partial = [s for s in seen if 0 < s < 6 * 48]
    assert len(set(partial)) >= 3, seen  # the reader really looked while training was writing
    final = ResponsibilityStore.open(path)
    assert final.steps == 6 * 48 and final.folded_steps("net.2.weight") == final.steps


def test_reader_opened_before_a_refold_follows_the_new_commit(tmp_path):
    """The fold a reader's manifest points to is deleted by a newer fold: the reader re-reads the manifest."""
    import torch

    from responsibility.recording.recorder import Recorder
    from responsibility.store import Layout
    from responsibility.store.spec import ParamSpec, RecordingSpec

    w = torch.nn.Parameter(torch.zeros(2, 3))
    tracked = [(ParamSpec("w", (2, 3)), w)]
    writer = ResponsibilityStore.create(
        tmp_path / "s.zarr", RecordingSpec((tracked[0][0],), num_examples=5), layout=Layout(chunk_steps=2, topk=2)
    )
    rec = Recorder(writer, tracked, background=False)

    def step(ids, value):
        rec.snapshot()
        with torch.no_grad():
            w.add_(value)
        rec.record_step(ids)

    step([0, 1], 1.0)
    step([2], -2.0)
    rec.flush()
    writer.fold()
    reader = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert reader.read("w")[:, 0, 0].tolist() == [1, 1, 2, 0, 0]
    step([0, 4], 0.5)
    rec.flush()
    writer.fold()  # new generation committed, the reader's generation deleted
    assert reader.read("w")[:, 0, 0].tolist() == [1.5, 1, 2, 0, 0.5]
    ids, _ = reader.most_responsible("w", k=2)
    assert ids[:, 0, 0].tolist() == [2, 0]


def test_checkpoint_ahead_of_store_and_read_budget(tmp_path):
    """Resuming a checkpoint that counts more steps than the store holds is refused; so is a read over budget."""
    import pytest
    import torch

    from responsibility import BudgetError, StoreCorruptError
    from responsibility.recording.recorder import Recorder
    from responsibility.store.spec import ParamSpec, RecordingSpec

    w = torch.nn.Parameter(torch.zeros(4, 4))
    store = ResponsibilityStore.create(tmp_path / "s.zarr", RecordingSpec((ParamSpec("w", (4, 4)),), num_examples=8))
    rec = Recorder(store, [(store.param("w"), w)], background=False)
    for t in range(3):
        rec.snapshot()
        with torch.no_grad():
            w.add_(1.0)
        rec.record_step([t])
    rec.close()
    with pytest.raises(StoreCorruptError, match="expects 5 recorded steps but the store has only 3"):
        store.rollback(5)
    assert store.steps == 3
    with pytest.raises(BudgetError, match="select columns with weights"):
        store.read("w", max_bytes=100)
    assert store.read("w", weights=[0], max_bytes=400).shape == (8, 1)
