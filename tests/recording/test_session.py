"""RecordingSession in a plain PyTorch loop (no Lightning): R against the naive float64 reference, resume from a
saved state, and the run policies (fresh run into a recorded store, structured advice)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import IndexedData, NaiveReference, all_arrays
from torch import nn
from torch.utils.data import DataLoader

from responsibility import RecordingSession, ResponsibilityStore, StoreExistsError
from responsibility.recording.recorder import Recorder

N = 30


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))


def train(
    session: RecordingSession,
    net: nn.Module,
    epochs: tuple[int, ...],
    ref=None,
    accumulate: int = 1,
    early_flushes: int = 0,
    **start_kw,
):
    """A plain training loop: SGD, loader shuffled by (seed, epoch), ``accumulate`` micro-batches per step; with
    ``early_flushes``, a flush that does not wait after every that many steps and at every epoch's end."""
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    data = IndexedData(N)
    session.track(net)
    session.start(N, labels=data.targets.numpy(), optimizers=[opt], examples_per_step=4 * accumulate, **start_kw)
    for epoch in epochs:
        order = DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(epoch))
        ids: list[torch.Tensor] = []
        for i, (x, y, idx) in enumerate(order):
            if ref is not None:
                ref.before_batch(net, idx)
            nn.functional.cross_entropy(net(x), y).backward()
            ids.append(idx)
            if (i + 1) % accumulate:
                continue
            session.snapshot()
            opt.step()
            opt.zero_grad()
            session.record_step(torch.cat(ids), epoch=epoch)
            ids = []
            if ref is not None:
                ref.after_step(net)
            if early_flushes and session.steps % early_flushes == 0:
                session.flush(wait=False)
        if early_flushes:
            session.flush(wait=False)
    session.finish()
    session.detach()


@pytest.mark.parametrize("accumulate", [1, 2])
def test_plain_loop_matches_naive_reference(tmp_path, accumulate):
    granularity = {"0.*": "neuron"}
    ref = NaiveReference(N, granularity={"0.weight": "neuron", "0.bias": "neuron"})
    session = RecordingSession(
        tmp_path / "s.zarr", granularity=granularity, attribution="uniform", journal_buffer_mb=0.001
    )
    net = model()
    train(session, net, (0, 1), ref, accumulate)
    s = ResponsibilityStore.open(tmp_path / "s.zarr")
    steps = 2 * len(range(0, N, 4)) // accumulate
    assert s.steps == session.steps == steps
    assert s.folded_steps("2.weight") == steps  # R fits the fold budget: folded at finish
    np.testing.assert_array_equal(s.labels, IndexedData(N).targets.numpy())
    assert s.read("0.weight").shape == (N, 6)
    for name in s.parameters:
        for sign in ("pos", "neg"):
            np.testing.assert_allclose(s.read(name, sign), ref.get(name, sign), rtol=2e-5, atol=1e-8, err_msg=name)


def test_resume_from_saved_state_equals_uninterrupted(tmp_path):
    """The state a checkpoint would hold, taken mid-run: a new session resumes there (rolling back later steps)."""
    train(RecordingSession(tmp_path / "a.zarr", journal_buffer_mb=0.001), model(), (0, 1))

    first = RecordingSession(tmp_path / "b.zarr", journal_buffer_mb=0.001)
    net = model()
    train(first, net, (0,))
    state, weights = first.state_dict(), {k: v.clone() for k, v in net.state_dict().items()}
    train(first, net, (1,))  # ran on past the "checkpoint": these steps must be rolled back
    net.load_state_dict(weights)
    second = RecordingSession(tmp_path / "b.zarr", journal_buffer_mb=0.001)
    second.load_state_dict(pickle.loads(pickle.dumps(state)))
    train(second, net, (1,))

    a, b = all_arrays(tmp_path / "a.zarr"), all_arrays(tmp_path / "b.zarr")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("attribution", ["uniform", "per_example"])
def test_flushes_that_do_not_wait_write_the_same_store(tmp_path, monkeypatch, attribution):
    """Flushed without waiting mid-chunk, the writer writes a chunk row's first steps while the loop fills the
    rest (and per-example values move to a larger buffer): the store must be bit-identical to one flushed only at
    the end."""
    kw = dict(attribution=attribution, granularity={"0.*": "neuron"}, journal_buffer_mb=0.02)
    train(RecordingSession(tmp_path / "a.zarr", **kw), model(), (0, 1, 2))
    write = Recorder._write

    def late_write(self, *job):
        time.sleep(0.02)  # so the loop records more steps into the buffer being written
        write(self, *job)

    monkeypatch.setattr(Recorder, "_write", late_write)
    early = RecordingSession(tmp_path / "b.zarr", **kw)
    train(early, model(), (0, 1, 2), early_flushes=3)
    assert ResponsibilityStore.open(tmp_path / "b.zarr").layout.chunk_steps > 3  # the flushes were mid-chunk
    a, b = all_arrays(tmp_path / "a.zarr"), all_arrays(tmp_path / "b.zarr")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize(("buffer_mb", "chunk_steps", "tallest"), [(1, 8, 256), (0.003, 4, 5), (0.002, 3, 3)])
def test_journal_chunk_rows_split_an_epoch_evenly(tmp_path, buffer_mb, chunk_steps, tallest):
    """8 steps per epoch. A 75-value row is 300 bytes and two buffers must fit: 0.003 MiB holds chunk rows of 5
    steps, so the epoch is split into 2 rows of 4; 0.002 MiB holds 3, so 3 rows of 3 (the last one 2); 1 MiB holds
    the cap, 256. Column chunks stay as wide as the tallest rows allow (4 MiB chunks), not wider."""
    session = RecordingSession(tmp_path / "s.zarr", attribution="uniform", journal_buffer_mb=buffer_mb)
    train(session, model(), (0, 1), steps_per_epoch=8)
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    assert store.spec.journal_width == 75
    assert store.layout.chunk_steps == chunk_steps
    assert store.layout.journal_chunk_cols == max(1024, (4 << 20) // (4 * tallest))
    ref = RecordingSession(tmp_path / "ref.zarr", attribution="uniform", journal_buffer_mb=buffer_mb)
    train(ref, model(), (0, 1))
    np.testing.assert_array_equal(
        store.read("2.weight"), ResponsibilityStore.open(tmp_path / "ref.zarr").read("2.weight")
    )


def test_fresh_run_into_recorded_store_is_refused_with_advice(tmp_path):
    train(RecordingSession(tmp_path / "s.zarr"), model(), (0,))
    with pytest.raises(StoreExistsError, match="already holds 8 recorded steps") as err:
        train(RecordingSession(tmp_path / "s.zarr"), model(), (0,))
    assert err.value.fixes == ({"store": ...}, {"overwrite": True})
    assert str(err.value).endswith("Settings that fix it: store=... or overwrite=True")
    hydra = err.value.render(lambda k, v: f"callbacks.responsibility.{k}={'...' if v is ... else str(v).lower()}")
    assert hydra.endswith("callbacks.responsibility.store=... or callbacks.responsibility.overwrite=true")
    again = pickle.loads(pickle.dumps(err.value))  # errors cross DDP ranks pickled
    assert type(again) is StoreExistsError and again.fixes == err.value.fixes and str(again) == str(err.value)
    train(RecordingSession(tmp_path / "s.zarr", overwrite=True), model(), (1,))
    assert ResponsibilityStore.open(tmp_path / "s.zarr").steps == 8


def test_recording_core_does_not_import_lightning():
    code = (
        "import sys, responsibility, responsibility.recording.session, responsibility.store; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
