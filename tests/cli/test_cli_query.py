"""``responsibility query`` and ``responsibility groups`` end to end on a tiny Hydra training run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT

from responsibility.cli import main
from responsibility.experiments.classifier import ImageClassifier
from responsibility.experiments.models import LeNet5


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "responsibility.cli", *args], capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("hydra") / "run"
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "experiment=digits_quick",
            f"hydra.run.dir={run}",
            "trainer.max_epochs=1",
            "data.num_samples=128",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return run


def test_query_run_dir_table_json_csv(run_dir, tmp_path):
    out = cli(
        "query", "--run-dir", str(run_dir), "--inputs", "test:0,1,2", "-k", "3",
        "--json", str(tmp_path / "q.json"), "--csv", str(tmp_path / "q.csv"), "--html", str(tmp_path / "q.html"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["input", "source", "true", "pred", "target", "rank", "example", "label", "score"]
    assert len(lines) == 1 + 3 * 3
    # Each input's own columns on its first row only; its ranks below.
    assert [line.split()[0] for line in lines[1::3]] == ["0", "1", "2"]
    assert [len(line.split()) for line in lines[1:]] == [9, 4, 4] * 3
    doc = json.loads((tmp_path / "q.json").read_text())
    assert [e["input"] for e in doc["inputs"]] == [0, 1, 2]
    assert all(len(e["example_ids"]) == 3 and e["labels"] is not None for e in doc["inputs"])
    assert len((tmp_path / "q.csv").read_text().strip().splitlines()) == 1 + 9
    page = (tmp_path / "q.html").read_text()
    assert page.count("<h2>Input ") == 3 and page.count("<tr><td>") == 9


def test_query_explicit_files_layers_and_target(run_dir, tmp_path, capsys):
    x = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    torch.save(torch.from_numpy(x), tmp_path / "x.pt")
    common = [
        "--config", str(run_dir / ".hydra" / "config.yaml"),
        "--checkpoint", str(run_dir / "checkpoints" / "last.ckpt"),
        "--store", str(run_dir / "responsibility.zarr"),
        "--method", "most_activated", "--layers", "net.fc2.weight", "--target", "4", "--json", "-",
    ]  # fmt: skip
    results = []
    for name in ("x.npy", "x.pt"):
        assert main(["query", "--inputs", str(tmp_path / name), *common[:-2], "--json", str(tmp_path / "o.json")]) == 0
        assert "net.fc2.weight[4," in capsys.readouterr().out
        doc = json.loads((tmp_path / "o.json").read_text())
        assert all(
            w["parameter"] == "net.fc2.weight" and w["index"][0] == 4 for e in doc["inputs"] for w in e["weights"]
        )
        results.append(doc)
    assert results[0] == results[1]


def test_groups(run_dir, capsys):
    out = cli("groups", str(run_dir / "responsibility.zarr"), "--param", "net.fc2.weight", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["classes"]
    assert len(rows) == 10 and sum(r["examples"] for r in rows) == 128
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert main(["groups", str(run_dir / "responsibility.zarr"), "--param", "net.fc2.weight"]) == 0
    assert "share" in capsys.readouterr().out


def test_store_commands_take_the_run_directory(run_dir, tmp_path, capsys):
    """inspect, top, groups and fold open a Hydra run directory's store, wherever its config put it."""
    for command in (
        ["inspect"],
        ["top", "--param", "net.fc2.weight", "-k", "2"],
        ["groups", "--param", "net.fc2.bias"],
    ):
        name, *rest = command
        assert main([name, str(run_dir / "responsibility.zarr"), *rest]) == 0
        by_store = capsys.readouterr().out
        assert main([name, str(run_dir), *rest]) == 0
        assert capsys.readouterr().out == by_store
    assert main(["fold", str(run_dir)]) == 0
    assert "nothing to fold" in capsys.readouterr().out
    # The run's config names the store: a moved store is found through it, not by its default name.
    config = run_dir / ".hydra" / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    moved = tmp_path / "run"
    (moved / ".hydra").mkdir(parents=True)
    cfg["callbacks"]["responsibility"]["store"] = str(run_dir / "responsibility.zarr")
    (moved / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["inspect", str(moved)]) == 0
    assert f"store        {run_dir / 'responsibility.zarr'}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def lenet_files(run_dir, tmp_path_factory):
    """A LeNet config and checkpoint for the same data: they build fine but do not match the paper-CNN store."""
    tmp = tmp_path_factory.mktemp("lenet")
    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    cfg["model"]["net"] = {
        "_target_": "responsibility.experiments.models.LeNet5",
        "in_channels": 1,
        "image_size": 8,
        "num_classes": 10,
    }
    (tmp / ".hydra").mkdir()
    (tmp / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    torch.save({"state_dict": ImageClassifier(LeNet5(image_size=8)).state_dict()}, tmp / "lenet.ckpt")
    return tmp


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run-dir", "{run}", "--store", "/nonexistent/s.zarr"], "no responsibility store"),
        (
            [
                "--config",
                "{lenet}/.hydra/config.yaml",
                "--checkpoint",
                "{lenet}/lenet.ckpt",
                "--store",
                "{run}/responsibility.zarr",
            ],
            "does not match the store",
        ),
        (["--run-dir", "{run}", "--checkpoint", "{lenet}/lenet.ckpt"], "does not fit the configured model"),
        (["--run-dir", "{run}", "--layers", "fc9"], "match no parameter of the store"),
        (["--run-dir", "{run}", "--inputs", "test:99999"], "outside the test set"),
        (["--run-dir", "{run}", "--inputs", "x.txt"], "does not exist"),
        (["--run-dir", "{run}", "-k", "0"], "k must be"),
        (["--inputs", "test:0"], "pass --run-dir"),
        (["--run-dir", "/nonexistent/run"], "not a Hydra run directory"),
    ],
)
def test_query_errors_are_one_line(run_dir, lenet_files, args, message, capsys):
    # In process: the subprocess path of main() is covered above, and each process start costs seconds.
    args = [a.format(run=run_dir, lenet=lenet_files) for a in args]
    if "--inputs" not in args:
        args += ["--inputs", "test:0"]
    assert main(["query", *args]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


class _Payload:
    """Unpickling this would run code: weights_only loading must refuse it before it runs."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("what", ["checkpoint", "inputs"])
def test_pickled_code_in_checkpoint_or_inputs_is_refused(run_dir, tmp_path, capsys, what):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    if what == "checkpoint":
        torch.save({"state_dict": {}, "payload": _Payload(str(marker))}, evil)
        args = ["--run-dir", str(run_dir), "--checkpoint", str(evil), "--inputs", "test:0"]
    else:
        torch.save(_Payload(str(marker)), evil)
        args = ["--run-dir", str(run_dir), "--inputs", str(evil)]
    assert main(["query", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read" in err[0] and "UnpicklingError" in err[0]
    assert not marker.exists()


def _test_set(run_dir):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    dm = instantiate(OmegaConf.load(run_dir / ".hydra" / "config.yaml").data)
    dm.setup("fit")
    return dm.test_set


def test_query_records_source_index_true_label_and_images(run_dir, tmp_path, capsys):
    out = tmp_path / "q.json"
    page = tmp_path / "q.html"
    assert main(["query", "--run-dir", str(run_dir), "--inputs", "test:3,0", "-k", "2", "--json", str(out)]) == 0
    out_, err = capsys.readouterr()
    assert "positions [3, 0] of the run's test set" in err and "source = index in the original test split" in err
    test = _test_set(run_dir)
    # The table names each input by the test position asked for, beside its index in the original split.
    firsts = [line.split()[:2] for line in out_.splitlines()[1:] if len(line.split()) > 4]
    assert firsts == [["3", str(test.source_indices[3])], ["0", str(test.source_indices[0])]]
    doc = json.loads(out.read_text())
    assert doc["method"] == "contribution" and doc["sign"] == "net"
    assert [e["source"] for e in doc["inputs"]] == test.source_indices[[3, 0]].tolist()
    assert [e["true_label"] for e in doc["inputs"]] == test.targets[[3, 0]].tolist()
    assert main(["query", "--run-dir", str(run_dir), "--inputs", "test:3,0", "-k", "2", "--html", str(page)]) == 0
    html = page.read_text()
    assert html.count('<img class="t" src="data:image/png;base64,') == 2 + 2 * 2  # inputs, then their examples
    assert f"source index {int(test.source_indices[3])}" in html and "true " in html


def test_query_npy_raw_pixels_get_the_runs_scaling(run_dir, tmp_path, capsys):
    test = _test_set(run_dir)
    raw = np.rint(test.images[:3, 0].numpy() * 16).astype(np.uint8)  # digits: 0..16 per pixel, (N, 8, 8)
    np.save(tmp_path / "raw.npy", raw)
    args = ["query", "--run-dir", str(run_dir), "-k", "3"]
    assert main([*args, "--inputs", str(tmp_path / "raw.npy"), "--json", str(tmp_path / "raw.json")]) == 0
    assert main([*args, "--inputs", "test:0,1,2", "--json", str(tmp_path / "test.json")]) == 0
    capsys.readouterr()
    from_file, from_test = (json.loads((tmp_path / f).read_text())["inputs"] for f in ("raw.json", "test.json"))
    assert [e["example_ids"] for e in from_file] == [e["example_ids"] for e in from_test]
    np.save(tmp_path / "big.npy", raw.astype(np.float32))  # raw values as floats: ambiguous, refused
    np.save(tmp_path / "shape.npy", np.zeros((2, 3, 8, 8), np.uint8))
    for name, message in (
        ("big.npy", "float inputs must be scaled"),
        ("shape.npy", "the run's model takes (N, 1, 8, 8)"),
    ):
        assert main([*args, "--inputs", str(tmp_path / name)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines


def test_query_checkpoint_of_another_run_is_refused(run_dir, tmp_path, capsys):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    (key,) = [k for k, v in ckpt["callbacks"].items() if isinstance(v, dict) and "store" in v]
    store_steps = ckpt["callbacks"][key]["steps"]
    other = tmp_path / "other.zarr"
    other.mkdir()
    cases = [
        ({"store": str(other)}, 2, "was trained while recording"),
        ({"steps": store_steps + 5}, 2, "they come from different runs"),
        ({"steps": store_steps - 1}, 0, f"from step {store_steps - 1} of the {store_steps} recorded steps"),
    ]
    for change, code, message in cases:
        edited = {**ckpt, "callbacks": {key: {**ckpt["callbacks"][key], **change}}}
        torch.save(edited, tmp_path / "c.ckpt")
        args = ["query", "--run-dir", str(run_dir), "--checkpoint", str(tmp_path / "c.ckpt"), "--inputs", "test:0"]
        assert main(args) == code
        assert message in capsys.readouterr().err
