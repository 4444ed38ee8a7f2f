"""``responsibility suspects`` and ``responsibility curate`` on a real digits run with planted flips: the ranking
checked against the library's score, the changes against the curation file that training and the explorer read."""

from __future__ import annotations

import json
import shlex
import shutil

import numpy as np
import pytest

from responsibility.analysis import label_push
from responsibility.cli import main
from responsibility.curation import FILE_NAME, Curation
from responsibility.explorer.app import Explorer
from responsibility.explorer.run import Run
from responsibility.store import ResponsibilityStore


@pytest.fixture
def run(digits_runs, tmp_path):
    """A copy of the seed-0 run without a curation file, so that a test may write one."""
    dst = tmp_path / "run"
    shutil.copytree(digits_runs[0], dst, ignore=shutil.ignore_patterns(FILE_NAME))
    return dst


def _suspects(capsys, run, *args):
    assert main(["suspects", str(run), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_suspects_rank_by_the_score_within_a_class_or_the_flips(run, capsys):
    store = ResponsibilityStore.open(run / "responsibility.zarr")
    labels = store.labels
    push = label_push(store, ["net.fc2.weight", "net.fc2.bias"], labels=labels)
    order = np.argsort(-push, kind="stable")  # ties to the smaller id, as the explorer ranks
    doc = _suspects(capsys, run, "-k", "7")
    assert doc["score"] == "label_push" and doc["total"] == len(labels)
    assert [r["id"] for r in doc["rows"]] == order[:7].tolist()
    assert [r["rank"] for r in doc["rows"]] == list(range(1, 8))
    np.testing.assert_allclose([r["score"] for r in doc["rows"]], push[order[:7]])
    # Within a class, by index or name: the same order, that class's examples only, ranked among all.
    in_class = order[labels[order] == 3]
    doc = _suspects(capsys, run, "-k", "4", "--class", "3")
    assert [r["id"] for r in doc["rows"]] == in_class[:4].tolist() and doc["total"] == int((labels == 3).sum())
    assert [r["rank"] for r in doc["rows"]] == [int(np.flatnonzero(order == i)[0]) + 1 for i in in_class[:4]]
    flipped = np.load(run / "flipped_ids.npy")
    doc = _suspects(capsys, run, "-k", "1000", "--only", "flipped")
    assert sorted(r["id"] for r in doc["rows"]) == sorted(flipped.tolist()) and all(r["flipped"] for r in doc["rows"])
    # The table marks the planted flips.
    assert main(["suspects", str(run), "-k", "30"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    marked = {int(line.split()[1]) for line in rows if line.split()[5:6] == ["yes"]}
    assert len(rows) == 30 and marked == set(order[:30].tolist()) & set(flipped.tolist())


def _curate(capsys, run, *args):
    code = main(["curate", str(run), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_curate_writes_the_log_that_training_applies(run, capsys):
    original = Run(run).original_labels
    code, out, _ = _curate(capsys, run, "relabel", "5,17", "--label", "7", "--reason", "looks like a 7")
    assert code == 0 and "recorded: relabel -> 7:7 of 2 example(s): 5,17" in out
    top = [r["id"] for r in _suspects(capsys, run, "--score", "final_loss", "--class", "3", "-k", "3")["rows"]]
    assert _curate(capsys, run, "remove", "--top", "3", "--score", "final_loss", "--class", "3")[0] == 0
    assert _curate(capsys, run, "reweight", "40", "--factor", "2.5")[0] == 0
    assert _curate(capsys, run, "tag", "41", "--text", "odd")[0] == 0
    code, out, _ = _curate(capsys, run, "undo")
    assert code == 0 and "took back: tag 'odd' of 1 example(s): 41" in out
    cur = Curation.load(run / FILE_NAME)
    expected = original.copy()
    expected[[5, 17]] = 7
    np.testing.assert_array_equal(cur.labels(original), expected)
    assert sorted(cur.state.removed) == sorted(top) and all(original[i] == 3 for i in top)
    weights = cur.loss_weights()
    assert weights[40] == 2.5 and (np.delete(weights, 40) == 1).all()
    assert cur.changes[0].reason == "looks like a 7" and len(cur.undone) == 1 and not cur.state.tags
    # The printed command trains a new sibling run with this file.
    command = shlex.split(out.splitlines()[-2])
    assert command[:2] == ["python", "scripts/train.py"]
    assert f"curation={run / FILE_NAME}" in command and f"hydra.run.dir={run}-curated-1" in command
    assert out.splitlines()[-1].split() == ["responsibility", "compare", str(run), f"{run}-curated-1"]
    code, out, _ = _curate(capsys, run, "show")
    assert code == 0 and out.splitlines()[0].endswith("relabel -> 7:7  ids 5,17  (looks like a 7)")
    assert "3 change(s): 2 relabelled, 3 removed, 1 reweighted" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["remove"], "give either example ids (e.g. 17,904) or --top K"),
        (["remove", "3", "--top", "2"], "give either example ids"),
        (["relabel", "3"], "curate relabel needs --label"),
        (["remove", "3", "--label", "2"], "curate remove takes no --label"),
        (["relabel", "3", "--label", "12"], "'12' (given to --label) is not a class of this run"),
        (["relabel", "3", "--label", "nine"], "'nine' (given to --label) is not a class"),
        (["remove", "3,x"], "ids must be integers separated by commas"),
        (["remove", "999"], "example ids [999] outside [0, 200)"),
        (["reweight", "1", "--factor", "0"], "factor must be a finite positive number"),
        (["remove", "--top", "0"], "--top must be at least 1"),
        (["undo", "3"], "curate undo takes the last change back, no ids"),
        (["show", "--label", "2"], "curate show takes no change, no --label"),
        (["remove", "3", "--class", "2"], "--score and --class choose the examples of --top K"),
    ],
)
def test_bad_changes_are_one_line_and_leave_the_file(run, capsys, args, message):
    assert _curate(capsys, run, "remove", "1")[0] == 0
    before = (run / FILE_NAME).read_bytes()
    code, _, err = _curate(capsys, run, *args)
    assert code == 2 and err.startswith("responsibility curate: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert (run / FILE_NAME).read_bytes() == before


def test_undo_with_nothing_to_undo(run, capsys):
    code, _, err = _curate(capsys, run, "undo")
    assert code == 2 and "nothing to undo" in err and not (run / FILE_NAME).exists()


def test_an_open_explorer_sees_changes_made_by_the_command(run, capsys):
    explorer = Explorer([Run(run)])
    assert explorer.curation(0).changes == []
    assert _curate(capsys, run, "remove", "3")[0] == 0
    assert [c.ids for c in explorer.curation(0).changes] == [(3,)]
    # A change in the app then keeps the command's change instead of overwriting the file with its old copy.
    explorer.change_curation(0, lambda cur: cur.record("remove", [4]))
    assert [c.ids for c in Curation.load(run / FILE_NAME).changes] == [(3,), (4,)]
    assert _curate(capsys, run, "remove", "5")[0] == 0
    assert [c.ids for c in explorer.curation(0).changes] == [(3,), (4,), (5,)]


def test_classes_are_given_by_index_or_name():
    from types import SimpleNamespace

    from responsibility.cli.curate_commands import _class

    run = SimpleNamespace(class_names=["T-shirt/top", "Trouser", "Bag"])
    given = ("0", "2", "trouser", "T-SHIRT/TOP", "1:Trouser", "2:bag", None)
    assert [_class(run, t, "--label") for t in given] == [0, 2, 1, 0, 1, 2, None]
    for bad in ("3", "-1", "Sneaker", "", "1:Bag", "5:Bag"):
        with pytest.raises(ValueError, match="is not a class of this run: 0:T-shirt/top, 1:Trouser, 2:Bag"):
            _class(run, bad, "--label")
    # A subset of digits keeps its original names: "1" names class 2, and indexes class 1 (named "8").
    run = SimpleNamespace(class_names=["3", "8", "1"])
    assert [_class(run, t, "--class") for t in ("8", "3", "0", "2:1", "1:8")] == [1, 0, 0, 2, 1]
    with pytest.raises(
        ValueError, match="both class 1's index and class 2's name; write it as the tables do: 1:8 or 2:1"
    ):
        _class(run, "1", "--class")
