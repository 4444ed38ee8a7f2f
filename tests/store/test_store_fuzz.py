"""Fuzzing the on-disk store: damaged metadata and chunks must give the right answer or a clear error.

A small valid store is built once; every case copies it, damages one thing, then opens it and reads everything
(R of every parameter and sign, rankings from the top-k index and from R, membership, step metadata, summary).
Acceptable outcomes: the damage was harmless (every answer equals the pristine store's), or a clear exception:
a library error or a builtin the brief allows, whose message names the store path. Anything else (an internal
TypeError/RuntimeError, a hang, different answers without an error) is a weakness. The first run of this file
found 17 (AttributeError/TypeError/RuntimeError escapes, silently wrong R from edited shapes or fold steps); the
store now validates its metadata digest, manifest types and every array's dtype and shape, so none remain.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from responsibility.choices import SIGNS
from responsibility.errors import ResponsibilityError
from responsibility.recording.recorder import Recorder
from responsibility.store import Layout, ResponsibilityStore
from responsibility.store.spec import ParamSpec, RecordingSpec

ALLOWED: tuple[type[BaseException], ...] = (
    ResponsibilityError,
    FileNotFoundError,
    ValueError,
    KeyError,
    IndexError,
    PermissionError,
)
TIMEOUT_S = 20.0
TOPK = 3
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,  # deterministic: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
Mutation = Callable[[Path], None]


def build_store(path: Path) -> None:
    """Three parameters covering every read path: partly folded, never folded, fully folded (top-k current)."""
    torch.manual_seed(0)
    params = [
        ("w", torch.nn.Parameter(torch.zeros(3, 4)), "weight"),
        ("b", torch.nn.Parameter(torch.zeros(3)), "weight"),
        ("u", torch.nn.Parameter(torch.zeros(2, 3)), "neuron"),
    ]
    tracked = [(ParamSpec(n, tuple(p.shape), g), p) for n, p, g in params]
    spec = RecordingSpec(tuple(s for s, _ in tracked), num_examples=10, batch_share="mean")
    layout = Layout(chunk_steps=3, journal_chunk_cols=5, r_chunk_examples=4, r_chunk_units=2, topk=TOPK)
    store = ResponsibilityStore.create(path, spec, layout=layout)
    rec = Recorder(store, tracked, background=False)

    def steps(ts: range) -> None:
        for t in ts:
            rec.snapshot()
            with torch.no_grad():
                for _, p, _ in params:
                    p.add_(torch.randn_like(p))
            rec.record_step([t % 10, (3 * t + 1) % 10, t % 10], t, 0)

    steps(range(7))
    rec.flush()
    store.fold(["w", "u"])
    steps(range(7, 9))
    rec.close()
    store.fold(["u"])
    assert store.folded_steps("w") == 7 and store.folded_steps("b") == 0 and store.folded_steps("u") == 9


def exercise(path: Path) -> dict[str, Any]:
    """Open the store and read every answer a user can ask for."""
    s = ResponsibilityStore.open(path)
    out: dict[str, Any] = {}
    for name in s.parameters:
        for sign in SIGNS:
            out[f"read/{name}/{sign}"] = s.read(name, sign)
            for k in (1, TOPK, TOPK + 1):  # k <= topk is served by the index when current, k > topk from R
                out[f"top/{name}/{sign}/{k}"] = s.most_responsible(name, k, sign)
    out["membership"] = s.membership()
    out["meta"] = s.meta()
    out["journal"] = s.journal_rows(0, s.steps)
    summary = s.summary()
    out["summary"] = {key: summary[key] for key in ("num_examples", "steps", "ids", "batch_share")}
    # Fold state is not an answer: a store whose fold entry is gone is a valid unfolded store with equal answers.
    fold_state = ("folded_steps", "fold_group")
    out["summary"]["parameters"] = [{k: v for k, v in p.items() if k not in fold_state} for p in summary["parameters"]]
    return out


def assert_same(got: Any, want: Any, where: str = "") -> None:
    """Deep equality of nested dicts/tuples/arrays (arrays: same shape, dtype and bits)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            assert_same(got[key], want[key], f"{where}/{key}")
    elif isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.shape == want.shape and got.dtype == want.dtype, where
        np.testing.assert_array_equal(got, want, err_msg=where)
    else:
        assert got == want, where


def check(path: Path, pristine: dict[str, Any], expect: str = "same") -> None:
    """Run :func:`exercise` with a timeout; accept identical answers or a clear error naming the store.

    ``expect="works"``: the damage describes another valid state (e.g. an earlier commit), so it must open and
    read, answers unchecked.
    """
    with cf.ThreadPoolExecutor(1) as pool:
        future = pool.submit(exercise, path)
        try:
            result = future.result(timeout=TIMEOUT_S)
        except cf.TimeoutError:
            pytest.fail(f"opening/reading the damaged store hung for more than {TIMEOUT_S} s")
        except Exception as exc:  # noqa: BLE001 - classifying what escapes is the point of this test
            tb = "".join(traceback.format_exception(exc))
            assert expect != "works", f"a valid store failed to read:\n{tb}"
            assert isinstance(exc, ALLOWED), f"unclear exception escaped: {type(exc).__qualname__}: {exc}\n{tb}"
            assert str(path) in str(exc), f"message does not name the store: {type(exc).__qualname__}: {exc}"
            return
    if expect == "same":
        assert_same(result, pristine)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("pristine") / "store"
    build_store(path)
    return path, exercise(path)


@pytest.fixture
def damaged(tmp_path: Path, pristine: tuple[Path, dict[str, Any]]) -> Callable[[Mutation], Path]:
    """A fresh copy of the pristine store, damaged by the given mutation."""
    counter = iter(range(10**9))

    def make(mutate: Mutation) -> Path:
        path = tmp_path / f"copy{next(counter)}"
        shutil.copytree(pristine[0], path)
        mutate(path)
        return path

    return make


# ---------------------------------------------------------------------- mutations
def edit_json(rel: str, fn: Callable[[Any], Any]) -> Mutation:
    """Rewrite ``rel/zarr.json`` with ``fn(document)`` (``fn`` may edit in place and return None)."""

    def mutate(root: Path) -> None:
        f = root / rel / "zarr.json"
        doc = json.loads(f.read_text())
        new = fn(doc)
        f.write_text(json.dumps(doc if new is None else new))

    return mutate


def at(path: list[Any], value: Any = None, delete: bool = False) -> Callable[[Any], None]:
    """Set (or delete) the item at ``path`` inside a JSON document."""

    def fn(doc: Any) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return fn


def root_attr(path: list[Any], value: Any = None, delete: bool = False) -> Mutation:
    return edit_json("", at(["attributes", *path], value, delete))


def write_file(rel: str, data: bytes) -> Mutation:
    def mutate(root: Path) -> None:
        (root / rel).write_bytes(data)

    return mutate


def truncate(rel: str, n: int) -> Mutation:
    def mutate(root: Path) -> None:
        f = root / rel
        f.write_bytes(f.read_bytes()[:n])

    return mutate


def remove(rel: str) -> Mutation:
    def mutate(root: Path) -> None:
        p = root / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    return mutate


R, M = ["responsibility"], ["manifest"]
SPEC, LAY, P0 = [*R, "spec"], [*R, "layout"], [*R, "spec", "params", 0]
# Every commit (journal block or one folded parameter) is a generation: 3 journal commits, then w (g4) and u (g5)
# folded, 1 more journal commit (6), u folded again (g7).
FOLD_W = "fold/w/g4"  # the partial fold of "w"
FOLD_U = "fold/u/g7"  # the current fold of "u": its top-k index serves most_responsible


# (id, mutation, expectation): "same" = identical answers or a clear error; "works" = another valid state.
CASES: list[tuple[str, Mutation, str]] = [
    # --- root zarr.json replaced or cut
    ("root-empty", write_file("zarr.json", b""), "same"),
    ("root-random-bytes", write_file("zarr.json", bytes(range(256))), "same"),
    ("root-invalid-json", write_file("zarr.json", b'{"zarr_format": 3, '), "same"),
    ("root-json-list", write_file("zarr.json", b"[]"), "same"),
    ("root-json-string", write_file("zarr.json", b'"x"'), "same"),
    ("root-json-number", write_file("zarr.json", b"5"), "same"),
    ("root-json-null", write_file("zarr.json", b"null"), "same"),
    ("root-json-empty-object", write_file("zarr.json", b"{}"), "same"),
    ("root-array-node", write_file("zarr.json", b'{"zarr_format": 3, "node_type": "array"}'), "same"),
    ("root-zarr-v2", write_file("zarr.json", b'{"zarr_format": 2, "node_type": "group"}'), "same"),
    ("root-is-directory", lambda p: (remove("zarr.json")(p), (p / "zarr.json").mkdir()), "same"),
    ("root-missing", remove("zarr.json"), "same"),
    # --- store attributes
    ("attrs-wrong-types", edit_json("", at(["attributes"], {R[0]: [], M[0]: []})), "same"),
    ("resp-string", root_attr(R, "x"), "same"),
    ("manifest-null", root_attr(M), "same"),
    ("format-string", root_attr([*R, "format"], "abc"), "same"),
    ("format-list", root_attr([*R, "format"], [1]), "same"),
    ("format-missing", root_attr([*R, "format"], delete=True), "same"),
    ("format-future", root_attr([*R, "format"], 99), "same"),
    ("spec-missing", root_attr(SPEC, delete=True), "same"),
    ("params-dict", root_attr([*SPEC, "params"], {"a": 1}), "same"),
    ("params-empty", root_attr([*SPEC, "params"], []), "same"),
    ("param-int", root_attr(P0, 5), "same"),
    ("param-name-int", root_attr([*P0, "name"], 5), "same"),
    ("param-name-duplicate", root_attr([*P0, "name"], "b"), "same"),
    ("param-shape-negative", root_attr([*P0, "shape"], [3, -4]), "same"),
    ("param-shape-nested", root_attr([*P0, "shape"], [[3], 4]), "same"),
    ("param-shape-int", root_attr([*P0, "shape"], 12), "same"),
    ("param-shape-bigger", root_attr([*P0, "shape"], [3, 5]), "same"),
    ("param-shape-smaller", root_attr([*P0, "shape"], [3, 3]), "same"),
    ("param-shape-scalar", root_attr([*P0, "shape"], []), "same"),
    ("param-shape-zero", root_attr([*P0, "shape"], [0, 4]), "same"),
    ("param-shape-huge", root_attr([*P0, "shape"], [10**6, 10**6]), "same"),
    ("param-granularity-bogus", root_attr([*P0, "granularity"], "bogus"), "same"),
    ("param-granularity-flipped", root_attr([*P0, "granularity"], "neuron"), "same"),
    ("num-examples-string", root_attr([*SPEC, "num_examples"], "abc"), "same"),
    ("num-examples-negative", root_attr([*SPEC, "num_examples"], -1), "same"),
    ("num-examples-zero", root_attr([*SPEC, "num_examples"], 0), "same"),
    ("num-examples-null", root_attr([*SPEC, "num_examples"]), "same"),
    ("num-examples-smaller", root_attr([*SPEC, "num_examples"], 5), "same"),
    ("num-examples-larger", root_attr([*SPEC, "num_examples"], 11), "same"),
    ("num-examples-huge", root_attr([*SPEC, "num_examples"], 10**30), "same"),
    ("num-examples-1e9", root_attr([*SPEC, "num_examples"], 10**9), "same"),
    ("batch-share-bogus", root_attr([*SPEC, "batch_share"], "bogus"), "same"),
    ("batch-share-missing", root_attr([*SPEC, "batch_share"], delete=True), "same"),
    ("layout-missing", root_attr(LAY, delete=True), "same"),
    ("layout-string", root_attr(LAY, "x"), "same"),
    ("layout-extra-key", root_attr([*LAY, "bogus"], 1), "same"),
    ("chunk-steps-zero", root_attr([*LAY, "chunk_steps"], 0), "same"),
    ("chunk-steps-numeric-string", root_attr([*LAY, "chunk_steps"], "3"), "same"),
    ("chunk-steps-float", root_attr([*LAY, "chunk_steps"], 1e300), "same"),
    ("chunk-steps-list", root_attr([*LAY, "chunk_steps"], [3]), "same"),
    ("codec-bogus", root_attr([*LAY, "codec"], "bogus"), "same"),
    ("topk-negative", root_attr([*LAY, "topk"], -1), "same"),
    ("topk-string", root_attr([*LAY, "topk"], "3"), "same"),
    ("topk-deeper-than-index", root_attr([*LAY, "topk"], 5), "same"),
    ("info-list", root_attr([*R, "info"], [1, 2]), "same"),
    # --- manifest
    ("manifest-steps-missing", root_attr([*M, "steps"], delete=True), "same"),
    ("manifest-steps-negative", root_attr([*M, "steps"], -1), "same"),
    ("manifest-steps-past-journal", root_attr([*M, "steps"], 12), "same"),
    ("manifest-steps-huge", root_attr([*M, "steps"], 10**30), "same"),
    (
        "manifest-steps-fraction",
        root_attr([*M, "steps"], 9.5),
        "same",
        # int() truncates to the true 9: lenient, but the answers are right
    ),
    (
        # A state a commit really wrote: 8 steps (24 ids), "u" not folded yet.
        "manifest-steps-earlier-commit",
        root_attr(M, {"generation": 9, "steps": 8, "ids": 24, "folded": {"w": {"steps": 7, "path": FOLD_W}}}),
        "works",
    ),
    ("manifest-steps-zero", root_attr([*M, "steps"], 0), "same"),
    ("manifest-ids-negative", root_attr([*M, "ids"], -1), "same"),
    ("manifest-ids-too-many", root_attr([*M, "ids"], 10**6), "same"),
    ("manifest-generation-string", root_attr([*M, "generation"], "abc"), "same"),
    ("folded-list", root_attr([*M, "folded"], []), "same"),
    ("folded-string", root_attr([*M, "folded"], "x"), "same"),
    ("folded-null", root_attr([*M, "folded"]), "same"),
    ("folded-unknown-param", root_attr([*M, "folded", "zzz"], {"steps": 7, "path": FOLD_W}), "same"),
    ("folded-entry-int", root_attr([*M, "folded", "w"], 5), "same"),
    ("folded-path-missing", root_attr([*M, "folded", "w", "path"], delete=True), "same"),
    ("folded-path-absent-group", root_attr([*M, "folded", "w", "path"], "fold/w/g99"), "same"),
    ("folded-path-other-param", root_attr([*M, "folded", "w", "path"], FOLD_U), "same"),
    ("folded-path-escape", root_attr([*M, "folded", "w", "path"], "../../etc"), "same"),
    ("folded-steps-zero", root_attr([*M, "folded", "w", "steps"], 0), "same"),
    ("folded-steps-past-journal", root_attr([*M, "folded", "w", "steps"], 100), "same"),
    ("folded-steps-fewer", root_attr([*M, "folded", "w", "steps"], 3), "same"),
    # --- array metadata
    ("rows-meta-empty", write_file("journal/rows/zarr.json", b""), "same"),
    ("rows-meta-truncated", truncate("journal/rows/zarr.json", 50), "same"),
    ("rows-meta-missing", remove("journal/rows/zarr.json"), "same"),
    ("rows-dtype-int32", edit_json("journal/rows", at(["data_type"], "int32")), "same"),
    ("rows-dtype-float64", edit_json("journal/rows", at(["data_type"], "float64")), "same"),
    ("rows-dtype-bogus", edit_json("journal/rows", at(["data_type"], "bogus")), "same"),
    ("rows-shape-fewer-rows", edit_json("journal/rows", at(["shape"], [2, 19])), "same"),
    ("rows-shape-narrower", edit_json("journal/rows", at(["shape"], [12, 10])), "same"),
    ("rows-shape-negative", edit_json("journal/rows", at(["shape"], [-1, 19])), "same"),
    ("rows-shape-1d", edit_json("journal/rows", at(["shape"], [12])), "same"),
    ("rows-chunks-zero", edit_json("journal/rows", at(["chunk_grid", "configuration", "chunk_shape"], [0, 5])), "same"),
    (
        "rows-chunks-changed",
        edit_json("journal/rows", at(["chunk_grid", "configuration", "chunk_shape"], [4, 5])),
        "same",
    ),
    ("rows-codec-unknown", edit_json("journal/rows", at(["codecs", 1, "name"], "bogus")), "same"),
    (
        "rows-endian-big",
        edit_json("journal/rows", at(["codecs", 0, "configuration", "endian"], "big")),
        "same",
    ),
    ("rows-node-group", edit_json("journal/rows", at(["node_type"], "group")), "same"),
    ("ids-dtype-float64", edit_json("journal/ids", at(["data_type"], "float64")), "same"),
    ("ids-meta-missing", remove("journal/ids/zarr.json"), "same"),
    ("steps-shape-two-columns", edit_json("journal/steps", at(["shape"], [12, 2])), "same"),
    ("steps-shape-fewer-rows", edit_json("journal/steps", at(["shape"], [4, 4])), "same"),
    ("fold-meta-missing", remove(f"{FOLD_W}/pos/zarr.json"), "same"),
    ("fold-group-missing", remove(FOLD_W), "same"),
    ("fold-shape-fewer-examples", edit_json(f"{FOLD_W}/pos", at(["shape"], [5, 12])), "same"),
    ("topk-index-shallower", edit_json(f"{FOLD_U}/top_abs_ids", at(["shape"], [1, 2])), "same"),
    ("topk-index-dtype", edit_json(f"{FOLD_U}/top_abs_ids", at(["data_type"], "float32")), "same"),
    # --- chunks
    ("rows-chunk-missing-unfolded", remove("journal/rows/c/2/0"), "same"),
    ("rows-chunk-missing-b-cols", remove("journal/rows/c/0/2"), "same"),
    ("rows-chunk-empty", truncate("journal/rows/c/2/0", 0), "same"),
    ("rows-chunk-truncated", truncate("journal/rows/c/2/0", 20), "same"),
    ("rows-chunk-garbage", write_file("journal/rows/c/2/0", bytes(range(64))), "same"),
    (
        "rows-chunk-is-directory",
        lambda p: (remove("journal/rows/c/2/0")(p), (p / "journal/rows/c/2/0").mkdir()),
        "same",
    ),
    ("ids-chunk-missing", remove("journal/ids/c/0"), "same"),
    ("ids-chunk-truncated", truncate("journal/ids/c/0", 10), "same"),
    ("steps-chunk-missing", remove("journal/steps/c/0/0"), "same"),
    ("steps-chunk-truncated", truncate("journal/steps/c/0/0", 17), "same"),
    ("fold-chunk-missing", remove(f"{FOLD_W}/pos/c/0/0"), "same"),
    ("fold-chunk-truncated", truncate(f"{FOLD_W}/pos/c/0/0", 5), "same"),
    ("topk-ids-chunk-missing", remove(f"{FOLD_U}/top_abs_ids/c/0/0"), "same"),
    ("topk-values-chunk-missing", remove(f"{FOLD_U}/top_abs_values/c/0/0"), "same"),
    ("journal-missing", remove("journal"), "same"),
]


def test_fixture_layout(pristine: tuple[Path, dict[str, Any]]) -> None:
    """The paths the cases damage exist, so a case cannot pass by damaging nothing."""
    root = pristine[0]
    for rel in ("journal/rows/c/2/0", "journal/rows/c/0/2", "journal/ids/c/0", "journal/steps/c/0/0"):
        assert (root / rel).is_file(), rel
    for rel in (f"{FOLD_W}/pos/c/0/0", f"{FOLD_U}/top_abs_ids/c/0/0", f"{FOLD_U}/top_abs_values/c/0/0"):
        assert (root / rel).is_file(), rel
    manifest = json.loads((root / "zarr.json").read_text())["attributes"]["manifest"]
    assert manifest["folded"]["w"]["path"] == FOLD_W and manifest["folded"]["u"]["path"] == FOLD_U


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [pytest.param(mutate, expect, id=name) for name, mutate, expect in CASES],
)
def test_damaged_store(
    damaged: Callable[[Mutation], Path], pristine: tuple[Path, dict[str, Any]], mutate: Mutation, expect: str
) -> None:
    check(damaged(mutate), pristine[1], expect)


def test_pristine_copy_reads_the_same(damaged: Callable[[Mutation], Path], pristine: tuple[Path, dict]) -> None:
    """Control: copying alone changes nothing."""
    check(damaged(lambda p: None), pristine[1], "same")


# ---------------------------------------------------------------------- random damage (hypothesis)
def json_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += json_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += json_paths(value, (*prefix, i))
    return out


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30])
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def attr_paths(pristine: tuple[Path, dict[str, Any]]) -> list[tuple[Any, ...]]:
    doc = json.loads((pristine[0] / "zarr.json").read_text())
    return [("attributes", *p) for p in json_paths(doc["attributes"])]


@FUZZ
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_root_metadata(damaged: Callable[[Mutation], Path], pristine: tuple, cut: float) -> None:
    """Any proper prefix of zarr.json (a torn write) is a clear error."""
    n = int(cut * (pristine[0] / "zarr.json").stat().st_size)
    check(damaged(truncate("zarr.json", n)), pristine[1])


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_root_metadata(damaged: Callable[[Mutation], Path], pristine: tuple, data: bytes) -> None:
    check(damaged(write_file("zarr.json", data)), pristine[1])


# Known to fail: no shrinking, so the expected failure costs a few examples, not a shrink search.
@settings(FUZZ, max_examples=60, phases=[Phase.generate])
@given(pick=st.integers(0, 10**6), value=json_values, delete=st.booleans())
def test_random_attribute_values(
    damaged: Callable[[Mutation], Path], pristine: tuple, attr_paths: list, pick: int, value: Any, delete: bool
) -> None:
    """Replace (or delete) one random value anywhere in the store attributes."""
    path = attr_paths[pick % len(attr_paths)]
    check(damaged(edit_json("", at(list(path), value, delete))), pristine[1])


@pytest.fixture(scope="module")
def chunk_files(pristine: tuple[Path, dict[str, Any]]) -> list[str]:
    root = pristine[0]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "/c/" in str(p))


@settings(FUZZ, max_examples=25)
@given(pick=st.integers(0, 10**6), cut=st.floats(0.0, 1.0, exclude_max=True), flip=st.booleans())
def test_damaged_chunk(
    damaged: Callable[[Mutation], Path], pristine: tuple, chunk_files: list, pick: int, cut: float, flip: bool
) -> None:
    """Truncating any chunk file, or flipping one byte of it, is detected or harmless (never a wrong answer)."""
    rel = chunk_files[pick % len(chunk_files)]

    def mutate(root: Path) -> None:
        f = root / rel
        data = bytearray(f.read_bytes())
        i = int(cut * len(data))
        if flip:
            data[i] ^= 0xFF
        else:
            del data[i:]
        f.write_bytes(bytes(data))

    check(damaged(mutate), pristine[1])
