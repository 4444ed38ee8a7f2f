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
    assert "net.0.weight" in cli("inspect", str(unfolded_store)).stdout

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
