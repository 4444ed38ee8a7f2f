"""Curation files: the log of changes, its replayed effect, undo, atomic saves and validation on load."""

from __future__ import annotations

import json
import math
import os
import pickle

import numpy as np
import pytest
import torch

from responsibility.curation import FORMAT, Curation, labels_sha256
from responsibility.errors import CurationError

LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1], dtype=np.int64)
NAMES = ["cat", "dog", "<b>bird</b>"]


def fresh() -> Curation:
    return Curation.for_labels(LABELS, 3, NAMES)


def test_replayed_state_matches_a_hand_computed_one():
    cur = fresh()
    cur.record("relabel", [1, 4], label=2, reason="looks like a bird")
    cur.record("relabel", [4], label=0)
    cur.record("remove", [3, 5, 3], reason="blurry")  # repeated id kept once
    cur.record("restore", [5])
    cur.record("reweight", [6], factor=10.0)
    cur.record("reweight", [7], factor=3.0)
    cur.record("reweight", [7], factor=1.0)  # back to the default
    cur.record("note", [0], text="check again")
    cur.record("tag", [0, 1], text="odd")
    cur.record("untag", [1], text="odd")
    s = cur.state
    assert s.labels == {1: 2, 4: 0}
    assert s.removed == {3}
    assert s.weights == {6: 10.0}
    assert s.notes == {0: "check again"}
    assert s.tags == {0: {"odd"}}
    assert cur.changes[2].ids == (3, 5)
    assert cur.labels(LABELS).tolist() == [0, 2, 2, 0, 0, 2, 0, 1]
    assert LABELS.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]  # a copy: the original labels are not changed
    # A dataset's labels as a tensor or a list give the same result, without numpy's deprecated copy request.
    assert (
        cur.labels(torch.from_numpy(LABELS)).tolist()
        == cur.labels(LABELS.tolist()).tolist()
        == [0, 2, 2, 0, 0, 2, 0, 1]
    )
    assert cur.kept_ids().tolist() == [0, 1, 2, 4, 5, 6, 7]
    assert cur.loss_weights().tolist() == [1, 1, 1, 1, 1, 1, 10, 1]
    assert fresh().loss_weights() is None


def test_file_round_trip_is_readable_json_with_times_and_reasons(tmp_path):
    cur = fresh()
    cur.record("relabel", [2], label=2, reason="r1")
    cur.record("note", [2], text='<script>alert("x")</script>')
    cur.save(tmp_path / "c.json")
    text = (tmp_path / "c.json").read_text()
    doc = json.loads(text)
    assert doc["format"] == FORMAT and doc["version"] == 1 and doc["num_examples"] == 8
    assert doc["labels_sha256"] == labels_sha256(LABELS)
    first = doc["changes"][0]
    assert first["action"] == "relabel" and first["ids"] == [2] and first["label"] == 2
    assert first["label_name"] == "<b>bird</b>" and first["reason"] == "r1" and "T" in first["time"]
    assert "\n" in text  # indented, one field per line: a person can read and diff it
    again = Curation.load(tmp_path / "c.json")
    assert again.to_json() == cur.to_json()
    assert again.state.notes == {2: '<script>alert("x")</script>'}


def test_undo_keeps_the_change_in_undone(tmp_path):
    cur = fresh()
    cur.record("remove", [1])
    cur.record("relabel", [2], label=0)
    undone = cur.undo()
    assert undone.action == "relabel" and undone.undone_at is not None
    assert cur.state.labels == {} and cur.state.removed == {1}
    cur.save(tmp_path / "c.json")
    again = Curation.load(tmp_path / "c.json")
    assert [c.action for c in again.undone] == ["relabel"] and again.undone[0].undone_at == undone.undone_at
    again.undo()
    with pytest.raises(CurationError, match="nothing to undo"):
        again.undo()


def test_a_failed_save_leaves_the_previous_file(tmp_path, monkeypatch):
    cur = fresh()
    cur.record("remove", [1])
    cur.save(tmp_path / "c.json")
    before = (tmp_path / "c.json").read_bytes()
    cur.record("remove", [2])

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        cur.save(tmp_path / "c.json")
    assert (tmp_path / "c.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temporary file left behind


def test_applies_only_to_its_own_dataset():
    cur = fresh()
    with pytest.raises(CurationError, match="another dataset"):
        cur.labels(LABELS[::-1])
    with pytest.raises(CurationError, match="for 8 training examples"):
        cur.check_labels(LABELS[:5])


@pytest.mark.parametrize(
    "action, kwargs, match",
    [
        ("relabel", {"ids": [8], "label": 0}, r"outside \[0, 8\)"),
        ("relabel", {"ids": [-1], "label": 0}, r"outside \[0, 8\)"),
        ("relabel", {"ids": [1], "label": 3}, r"label 3 outside \[0, 3\)"),
        ("relabel", {"ids": [1], "label": None}, "expected integers"),
        ("relabel", {"ids": [True], "label": 0}, "expected integers"),
        ("relabel", {"ids": [], "label": 0}, "non-empty"),
        ("reweight", {"ids": [1], "factor": 0.0}, "finite positive"),
        ("reweight", {"ids": [1], "factor": -2.0}, "finite positive"),
        ("reweight", {"ids": [1], "factor": math.nan}, "finite positive"),
        ("reweight", {"ids": [1], "factor": math.inf}, "finite positive"),
        ("tag", {"ids": [1], "text": "  "}, "empty"),
        ("tag", {"ids": [1], "text": "x" * 65}, "at most 64"),
        ("note", {"ids": [1], "text": None}, "must be a string"),
        ("delete", {"ids": [1]}, "action must be one of"),
    ],
)
def test_bad_changes_are_refused_and_nothing_is_recorded(action, kwargs, match):
    cur = fresh()
    with pytest.raises(CurationError, match=match):
        cur.record(action, **kwargs)
    assert cur.changes == []


def _doc() -> dict:
    cur = fresh()
    cur.record("relabel", [1], label=2)
    cur.record("reweight", [2], factor=2.0)
    cur.undo()
    return cur.to_json()


def _edit(path, value):
    def apply(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return doc

    return apply


@pytest.mark.parametrize(
    "edit, match",
    [
        (_edit(["format"], "something-else"), "not a curation file"),
        (_edit(["version"], 2), "version 2 is not supported"),
        (_edit(["extra"], 1), r"unknown fields \['extra'\]"),
        (_edit(["changes"], KeyError), r"missing fields \['changes'\]"),
        (_edit(["num_examples"], 0), "num_examples must be a positive integer"),
        (_edit(["num_examples"], "8"), "num_examples must be a positive integer"),
        (_edit(["class_names"], ["a", "b"]), "class_names must be 3 strings"),
        (_edit(["changes", 0, "ids"], [1, 1]), "ids repeat"),
        (_edit(["changes", 0, "ids"], [1.0]), "expected integers"),
        (_edit(["changes", 0, "label_name"], "dog"), "does not name label 2"),
        (_edit(["changes", 0, "time"], "yesterday"), "ISO 8601"),
        (_edit(["changes", 0, "shell"], "rm -rf /"), "got .*shell"),
        (_edit(["changes", 0, "action"], "exec"), "action must be one of"),
        (_edit(["undone", 0, "factor"], 0), "finite positive"),
        (_edit(["undone", 0, "undone_at"], KeyError), "fields"),
        (_edit(["changes"], {"0": {}}), "changes must be a list"),
    ],
)
def test_malformed_files_are_refused_naming_the_field(tmp_path, edit, match):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(edit(_doc())))
    with pytest.raises(CurationError, match=match):
        Curation.load(path)


def test_non_json_files_are_refused_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "c.json").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CurationError, match="cannot read|not valid JSON"):
        Curation.load(tmp_path / "c.json")
    (tmp_path / "d.json").write_text("[1, 2]")
    with pytest.raises(CurationError, match="JSON object"):
        Curation.load(tmp_path / "d.json")
    (tmp_path / "e.json").write_text('{"format": "responsibility-curation", "version": 1, "changes": NaN')
    with pytest.raises(CurationError, match="not valid JSON"):
        Curation.load(tmp_path / "e.json")
    with pytest.raises(CurationError, match="no curation file"):
        Curation.load(tmp_path / "missing.json")
    assert not (tmp_path / "pwned").exists()
