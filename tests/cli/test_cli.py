"""The ``responsibility`` command end to end (subprocess), including its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import IndexedData, TinyNet, make_trainer
from torch.utils.data import DataLoader

from responsibility import ResponsibilityCallback, ResponsibilityStore


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "responsibility.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def unfolded_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cb = ResponsibilityCallback(tmp / "s.zarr", fold="never", topk=4)
    make_trainer(tmp, [cb], max_epochs=2).fit(TinyNet(), DataLoader(IndexedData(48), batch_size=8, shuffle=True))
    return tmp / "s.zarr"


def test_inspect_fold_top(unfolded_store):
    out = cli("inspect", str(unfolded_store), "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["steps"] == 12 and info["num_examples"] == 48
    assert [p["folded_steps"] for p in info["parameters"]] == [0, 0, 0, 0]
    assert info["layout"]["topk_signs"] == ["abs"]
    text = cli("inspect", str(unfolded_store)).stdout
    assert "net.0.weight" in text
    assert "codec=lz4 journal=float32 R=float32; top-k index: depth 4, of abs" in text

    lazy = cli("top", str(unfolded_store), "--param", "net.2.weight", "--weights", "1,2", "-k", "3", "--json")
    assert lazy.returncode == 0, lazy.stderr

    out = cli("fold", str(unfolded_store))
    assert out.returncode == 0, out.stderr
    assert "folded 4 parameter(s) over 12 steps" in out.stdout
    store = ResponsibilityStore.open(unfolded_store)
    assert store.folded_steps("net.2.weight") == 12

    folded = cli("top", str(unfolded_store), "--param", "net.2.weight", "--weights", "1,2", "-k", "3", "--json")
    rows = json.loads(folded.stdout)
    assert rows == json.loads(lazy.stdout)  # lazy (journal) and folded (top-k index) answers agree
    r = store.read("net.2.weight")[:, 1, 2]
    assert [row["example"] for row in rows] == np.argsort(-r, kind="stable")[:3].tolist()
    assert [row["index"] for row in rows] == [[1, 2]] * 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "/nonexistent/store.zarr"], "no responsibility store"),
        (["top", "{store}", "--param", "fc9.weight"], "not recorded in this store"),
        (["top", "{store}", "--param", "net.2.weight", "--weights", "9,9"], "outside"),
        (["top", "{store}", "--param", "net.2.weight", "-k", "0"], "k must be"),
    ],
)
def test_errors_are_one_line_and_nonzero(unfolded_store, args, message):
    out = cli(*[a.format(store=unfolded_store) for a in args])
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_closed_pipe_ends_quietly(unfolded_store):
    """``inspect ... | head``: the reader goes away before the command writes; no traceback, no noise."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "responsibility.cli", "inspect", str(unfolded_store), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the interpreter has even started up
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert err == ""


def test_a_run_directory_points_at_its_store(unfolded_store):
    out = cli("inspect", str(unfolded_store.parent))
    assert out.returncode == 2
    assert f"did you mean {unfolded_store}" in out.stderr


def test_help_names_parameters_as_recorded():
    out = cli("top", "--help")
    assert "net.fc2.weight" in out.stdout and " fc2.weight" not in out.stdout


def small_store(path, class_names=None):
    """A store written without Lightning: 2 classes, one (2, 3) weight, 6 steps of 2 examples."""
    import torch

    from responsibility.recording.recorder import Recorder
    from responsibility.store import Layout
    from responsibility.store.spec import ParamSpec, RecordingSpec

    spec = RecordingSpec((ParamSpec("net.fc2.weight", (2, 3)), ParamSpec("net.fc1.weight", (4, 2))), num_examples=6)
    labels = np.array([0, 1, 0, 1, 1, 0])
    store = ResponsibilityStore.create(
        path, spec, layout=Layout(chunk_steps=2, topk=2, r_chunk_units=1), labels=labels, class_names=class_names
    )
    params = [torch.nn.Parameter(torch.zeros(s.shape)) for s in spec.params]
    rec = Recorder(store, list(zip(spec.params, params, strict=True)), background=False)
    for t in range(6):
        rec.snapshot()
        with torch.no_grad():
            for i, p in enumerate(params):
                p.add_(float(t + 1 + i))
        rec.record_step([t, (t + 1) % 6])
    rec.close()
    return store


def test_top_and_groups_print_class_names(tmp_path):
    small_store(tmp_path / "s.zarr", class_names=["shirt", "coat"])
    top = cli("top", str(tmp_path / "s.zarr"), "--param", "net.fc2.weight", "--weights", "0", "-k", "2")
    assert top.returncode == 0, top.stderr
    # Step t changes every weight by t + 1 and holds examples t and t + 1 (mod 6): R = 7, 3, 5, 7, 9, 11.
    assert [line.split()[-3:-1] for line in top.stdout.splitlines()[1:]] == [["5", "shirt"], ["4", "coat"]]
    rows = json.loads(
        cli("top", str(tmp_path / "s.zarr"), "--param", "net.fc2.weight", "--weights", "0", "-k", "2", "--json").stdout
    )
    assert [(r["example"], r["label"], r["class"], r["value"]) for r in rows] == [
        (5, 0, "shirt", 11),
        (4, 1, "coat", 9),
    ]
    groups = cli("groups", str(tmp_path / "s.zarr"), "--param", "net.fc2.weight", "--json")
    assert [c["name"] for c in json.loads(groups.stdout)["classes"]] == ["shirt", "coat"]
    assert "coat" in cli("groups", str(tmp_path / "s.zarr"), "--param", "net.fc2.weight").stdout


def test_fold_says_what_it_will_write_and_ctrl_c_is_one_line(tmp_path, monkeypatch, capsys):
    import os
    import signal

    from responsibility.cli import main
    from responsibility.store import _fold

    store = small_store(tmp_path / "s.zarr")
    real = _fold.accumulate

    def interrupted(journal, p, *args, **kwargs):
        if p.name == "net.fc1.weight":  # the second parameter: the first one is committed by then
            os.kill(os.getpid(), signal.SIGINT)
        return real(journal, p, *args, **kwargs)

    monkeypatch.setattr(_fold, "accumulate", interrupted)
    assert main(["--quiet", "fold", str(tmp_path / "s.zarr"), "--budget-mb", "0.000001"]) == 130
    out, err = capsys.readouterr()
    assert "folding 2 parameter(s) over 6 steps" in out and "of R" in out
    assert err.strip().splitlines() == [
        "responsibility fold: interrupted: fold of 'net.fc1.weight' interrupted; parameters folded before it are "
        "committed"
    ]
    store.refresh()
    assert store.folded_steps("net.fc2.weight") == 6 and store.folded_steps("net.fc1.weight") == 0
    assert store.orphans() == []
