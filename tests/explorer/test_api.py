"""The explorer's HTTP API through Starlette's TestClient, on real digits runs: reads checked against the library's
own analyses, changes guarded by the token, ids and ranges validated, data returned as data."""

from __future__ import annotations

import io
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from responsibility.analysis import interclass_matrix, label_push
from responsibility.curation import FILE_NAME
from responsibility.evaluation.metrics import detection_curve
from responsibility.explorer.app import TOKEN_HEADER, Explorer, create_app
from responsibility.explorer.routes import STATIC
from responsibility.explorer.run import Run
from responsibility.query import attribute

TOKEN = "test-token"


def _copies(sources, root):
    """Copies of the runs without any curation file, so that a test may write one."""
    copies = []
    for src in sources:
        dst = root / src.name
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(FILE_NAME))
        copies.append(dst)
    return copies


def _client(dirs):
    explorer = Explorer([Run(d) for d in dirs])
    client = TestClient(create_app(explorer, TOKEN, ["testserver"]), raise_server_exceptions=False)
    client.explorer = explorer
    return client


@pytest.fixture(scope="module")
def shared(digits_runs, tmp_path_factory):
    """One app for the tests that change nothing (each checks that)."""
    dirs = _copies(digits_runs, tmp_path_factory.mktemp("shared"))
    with _client(dirs) as client:
        yield client, dirs


@pytest.fixture
def fresh(digits_runs, tmp_path):
    """An app of its own, for a test that changes the curation."""
    dirs = _copies(digits_runs, tmp_path)
    with _client(dirs) as client:
        yield client, dirs


def post(client, path, body=None, token=TOKEN):
    headers = {TOKEN_HEADER: token} if token is not None else {}
    return client.post(path, json=body, headers=headers)


def test_suspects_are_ranked_by_the_library_score_and_filtered(shared):
    client, runs = shared
    store_labels = Run(runs[0]).store.labels
    expected = label_push(Run(runs[0]).store, ["net.fc2.weight", "net.fc2.bias"], labels=store_labels)
    page = client.get("/api/runs/0/suspects?score=label_push&limit=20").json()
    assert page["total"] == 200
    ids = [row["id"] for row in page["rows"]]
    assert ids == np.argsort(-expected, kind="stable")[:20].tolist()
    assert [row["score"] for row in page["rows"]] == pytest.approx(expected[ids].tolist())
    page2 = client.get("/api/runs/0/suspects?score=label_push&limit=20&offset=20").json()
    assert [row["rank"] for row in page2["rows"]] == list(range(21, 41))
    only3 = client.get("/api/runs/0/suspects?score=final_loss&cls=3&limit=500").json()
    assert only3["total"] == int((store_labels == 3).sum()) and {r["label"] for r in only3["rows"]} == {3}
    flipped = client.get("/api/runs/0/suspects?only=flipped&limit=500").json()
    assert flipped["total"] == 20 and all(r["flipped"] and r["label"] != r["clean"] for r in flipped["rows"])


def test_detection_curve_and_class_matrix_match_the_analysis_functions(shared):
    client, runs = shared
    run = Run(runs[0])
    doc = client.get("/api/runs/0/detection").json()
    assert doc["flipped"] == 20
    curve = next(c for c in doc["curves"] if c["score"] == "label_push")
    flipped = np.flatnonzero(run.labels != run.clean_labels)
    reference = detection_curve(label_push(run.store, labels=run.labels), flipped)
    assert curve["found"][-1] == 1.0 and curve["auc"] == pytest.approx(reference.mean())
    classes = client.get("/api/runs/0/classes?k=3").json()
    assert np.allclose(classes["matrix"], interclass_matrix(run.store, "net.fc2.weight", normalize=True), rtol=1e-5)
    assert all(len(top) == 3 for top in classes["top"])


def test_a_test_input_is_explained_by_the_library_default(shared):
    client, runs = shared
    run = Run(runs[0])
    item = client.get("/api/runs/0/tests/7").json()
    # The default explanation of that one input, computed alone (the app computes the test set in batches).
    scores = attribute(run.model, run.store, run.images("test")[7:8])[0].astype(np.float64)
    for key, signed in (("supports", scores), ("opposes", -scores)):
        rows = item[key]
        assert rows and all(e["score"] > 0 for e in rows)
        assert [e["score"] for e in rows] == pytest.approx(np.sort(signed)[::-1][: len(rows)].tolist(), rel=1e-4)
        assert [signed[e["id"]] for e in rows] == pytest.approx([e["score"] for e in rows], rel=1e-4)
    assert not {e["id"] for e in item["supports"]} & {e["id"] for e in item["opposes"]}
    assert item["predicted"] == item["probabilities"][0]["class"]


def test_thumbnails_are_the_dataset_pixels(shared):
    client, runs = shared
    run = Run(runs[0])
    for split, i in (("train", 3), ("test", 11)):
        res = client.get(f"/api/runs/0/thumbs/{split}/{i}")
        assert res.headers["content-type"] == "image/png"
        pixels = np.asarray(Image.open(io.BytesIO(res.content)))
        expected = np.round(run.images(split)[i, 0].numpy() * 255).astype(np.uint8)
        assert pixels.shape == (8, 8) and np.array_equal(pixels, expected)


def test_changes_without_the_token_are_refused_and_change_nothing(shared):
    client, runs = shared
    before = client.get("/api/runs/0/curation").json()
    for token in (None, "", "wrong-token"):
        for path, body in (
            ("/api/runs/0/curation", {"action": "remove", "ids": [1]}),
            ("/api/runs/0/curation/undo", None),
            ("/api/runs/0/retrain", None),
            ("/api/job/cancel", None),
        ):
            res = post(client, path, body, token=token)
            assert res.status_code == 403, (path, token, res.text)
            assert "token" in res.json()["error"]
    assert client.put("/api/runs/0/curation", json={"action": "remove", "ids": [1]}).status_code == 403
    assert client.get("/api/runs/0/curation").json() == before
    assert not (runs[0] / FILE_NAME).exists()
    assert client.get("/api/job").json() == {"state": "none"}


def test_actions_are_saved_as_a_readable_log_with_undo(fresh):
    client, runs = fresh
    relabel = {"action": "relabel", "ids": [4, 9], "label": 7, "reason": "r"}
    assert post(client, "/api/runs/0/curation", relabel).is_success
    assert post(client, "/api/runs/0/curation", {"action": "remove", "ids": [12]}).is_success
    top = client.get("/api/runs/0/suspects?score=label_push&limit=3").json()["rows"]
    reweight = {"action": "reweight", "top": {"score": "label_push", "k": 3, "cls": None}, "factor": 10}
    res = post(client, "/api/runs/0/curation", reweight)
    summary = {"relabelled": 2, "removed": 1, "reweighted": 3, "notes": 0, "tagged": 0}
    assert res.is_success and res.json()["summary"] == summary
    doc = json.loads((runs[0] / FILE_NAME).read_text())
    assert [c["action"] for c in doc["changes"]] == ["relabel", "remove", "reweight"]
    assert doc["changes"][0]["ids"] == [4, 9] and doc["changes"][0]["label"] == 7 and doc["changes"][0]["reason"] == "r"
    assert doc["changes"][2]["ids"] == [r["id"] for r in top] and doc["changes"][2]["factor"] == 10
    rows = client.get("/api/runs/0/suspects?only=curated&limit=500").json()["rows"]
    assert sorted(r["id"] for r in rows) == sorted({4, 9, 12, *[r["id"] for r in top]})
    undone = post(client, "/api/runs/0/curation/undo").json()
    assert [c["action"] for c in undone["changes"]] == ["remove", "relabel"]  # newest first
    assert undone["undone"][0]["action"] == "reweight"
    assert json.loads((runs[0] / FILE_NAME).read_text())["undone"][0]["action"] == "reweight"


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("get", "/api/runs/0/examples/200", None, 404),
        ("get", "/api/runs/0/tests/100000", None, 404),
        ("get", "/api/runs/2/suspects", None, 404),
        ("get", "/api/runs/0/thumbs/train/200", None, 404),
        ("get", "/api/runs/0/thumbs/secret/1", None, 404),
        ("get", "/api/runs/0/suspects?cls=10", None, 400),
        ("get", "/api/runs/0/suspects?limit=0", None, 400),
        ("get", "/api/runs/0/suspects?limit=501", None, 400),
        ("get", "/api/runs/0/suspects?offset=-1", None, 400),
        ("get", "/api/runs/0/suspects?score=__class__", None, 400),
        ("get", "/api/runs/0/tests?true=x", None, 400),
        ("get", "/api/compare?a=0&b=0", None, 400),
        ("get", "/api/compare?a=0&b=9", None, 400),
        ("post", "/api/runs/0/curation", {"action": "remove", "ids": [200]}, 400),
        ("post", "/api/runs/0/curation", {"action": "remove", "ids": [-1]}, 400),
        ("post", "/api/runs/0/curation", {"action": "remove", "ids": ["1"]}, 400),
        ("post", "/api/runs/0/curation", {"action": "remove", "ids": list(range(201))}, 400),
        ("post", "/api/runs/0/curation", {"action": "relabel", "ids": [1], "label": 10}, 400),
        ("post", "/api/runs/0/curation", {"action": "reweight", "ids": [1], "factor": 0}, 400),
        ("post", "/api/runs/0/curation", {"action": "reweight", "ids": [1], "factor": -1}, 400),
        ("post", "/api/runs/0/curation", {"action": "remove", "top": {"score": "label_push", "k": 0}}, 400),
        ("post", "/api/runs/0/curation", {"action": "remove", "top": {"score": "label_push", "k": 1, "cls": 99}}, 400),
        ("post", "/api/runs/0/curation", {"action": "remove", "ids": [1], "path": "/etc/passwd"}, 400),
        ("post", "/api/runs/0/curation", {"action": "exec", "ids": [1]}, 400),
        ("post", "/api/runs/0/curation", {"action": "remove"}, 400),
        ("post", "/api/runs/0/curation/undo", None, 400),
        ("post", "/api/runs/0/retrain", None, 400),
        ("post", "/api/job/cancel", None, 404),
    ],
)
def test_bad_ids_and_ranges_are_rejected_and_change_nothing(shared, method, path, body, status):
    client, runs = shared
    res = client.get(path) if method == "get" else post(client, path, body)
    assert res.status_code == status, res.text
    assert res.json()["error"]
    assert not (runs[0] / FILE_NAME).exists()
    assert client.get("/api/runs/0/curation").json()["changes"] == []


def test_markup_in_class_names_and_notes_stays_data(fresh):
    client, runs = fresh
    run = client.explorer.run(0)
    evil = '<img src=x onerror="alert(1)">'
    run.datamodule.class_names = [f"{evil}{c}" for c in range(10)]
    res = client.get("/api/runs")
    assert res.headers["content-type"] == "application/json" and res.json()[0]["class_names"][0] == f"{evil}0"
    note = "<script>alert('note')</script>"
    res = post(client, "/api/runs/0/curation", {"action": "note", "ids": [5], "text": note})
    assert res.headers["content-type"] == "application/json"
    assert client.get("/api/runs/0/examples/5").json()["curation"]["note"] == note
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html") and evil not in page.text and note not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    # The front end never turns data into markup: no HTML-parsing sinks anywhere in it.
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|eval\(")
    for path in STATIC.glob("*.js"):
        assert not sinks.search(path.read_text()), path.name


def test_requests_for_other_hosts_are_refused(shared):
    client, runs = shared
    assert client.get("/api/runs", headers={"host": "evil.example"}).status_code == 400


def test_compare_two_seeds(shared):
    client, runs = shared
    doc = client.get("/api/compare?a=0&b=1").json()
    a, b = Run(runs[0]), Run(runs[1])
    from responsibility.explorer import derived

    pa, pb = (derived.predictions(r)["test"].argmax(1) for r in (a, b))
    y = a.test_labels
    assert doc["accuracy_a"] == pytest.approx((pa == y).mean()) and doc["accuracy_b"] == pytest.approx((pb == y).mean())
    assert [row["index"] for row in doc["fixed"]] == np.flatnonzero((pa != y) & (pb == y))[:50].tolist()
    assert [row["index"] for row in doc["broken"]] == np.flatnonzero((pa == y) & (pb != y))[:50].tolist()
    assert doc["curated"] == []  # seed 1 trained on another subset: nothing was curated between them


def test_one_retraining_job_at_a_time_and_cancel_removes_its_run(fresh):
    client, runs = fresh
    assert post(client, "/api/runs/0/curation", {"action": "remove", "ids": [3]}).is_success
    started = post(client, "/api/runs/0/retrain")
    assert started.status_code == 200 and started.json()["state"] == "running"
    target = runs[0].parent / started.json()["target"]
    assert target.name == "seed0-curated-1" and target.is_dir()
    again = post(client, "/api/runs/0/retrain")
    assert again.status_code == 409 and "already running" in again.json()["error"]
    cancelled = post(client, "/api/job/cancel").json()
    assert cancelled["state"] == "cancelled" and not target.exists()
    assert client.get("/api/job").json()["state"] == "cancelled"
    assert len(client.get("/api/runs").json()) == 2  # nothing was added
