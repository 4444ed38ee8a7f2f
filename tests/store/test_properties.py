"""Property tests: whatever the chunking, flushes, resumes and folds, R equals a naive float64 reference.

Hypothesis draws the structure of a run (parameters and their granularity, layout, batch share, batch sizes and
ids, where to flush, fold, resume) and a seed for the bulk numbers (weights before and after every step). The
reference is computed independently with plain Python loops in float64 from the very same float32 weights.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responsibility.choices import SIGNS
from responsibility.recording.recorder import Recorder
from responsibility.store import Layout, ResponsibilityStore
from responsibility.store.spec import ParamSpec, RecordingSpec

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SHAPES: list[tuple[int, ...]] = [(3, 4), (5,), (2, 3, 2), (1,), (4, 1)]
# Orders of magnitude of a step's Δw: exact zeros, tiny, ordinary and large changes.
SCALES = [0.0, 1e-30, 1e-7, 1e-3, 1.0, 1e3, 1e6]


@dataclass
class Step:
    """One optimizer step: every parameter's value before and after it (float32), and the batch's ids."""

    before: list[np.ndarray]
    after: list[np.ndarray]
    ids: list[int]


@dataclass
class Run:
    """A drawn recording: spec, layout, steps and the events (flush/fold/resume) after given steps."""

    specs: list[ParamSpec]
    num_examples: int
    batch_share: str
    layout: Layout
    background: bool
    steps: list[Step]
    events: dict[int, tuple[str, int]] = field(default_factory=dict)


def make_steps(rng: np.random.Generator, specs: list[ParamSpec], batches: list[list[int]]) -> list[Step]:
    """Weights before/after each step; Δw mixes exact zeros, tiny and huge magnitudes of either sign."""
    steps = []
    for ids in batches:
        before, after = [], []
        for s in specs:
            base = (rng.standard_normal(s.shape) * rng.choice([0.0, 1.0, 100.0])).astype(np.float32)
            scale = rng.choice(SCALES, size=s.shape)
            delta = rng.standard_normal(s.shape) * scale * (rng.random(s.shape) > 0.2)
            before.append(base)
            after.append((base + delta).astype(np.float32))
        steps.append(Step(before, after, ids))
    return steps


@st.composite
def runs(draw: st.DrawFn, max_steps: int = 18, with_events: bool = True) -> Run:
    """A random recording with random events; events fire once, the first time their step is recorded."""
    n = draw(st.integers(1, 7))
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=2))
    specs = [ParamSpec(f"p{i}", shape, draw(st.sampled_from(["weight", "neuron"]))) for i, shape in enumerate(shapes)]
    layout = Layout(
        chunk_steps=draw(st.integers(1, 5)),
        journal_chunk_cols=draw(st.integers(1, 9)),
        r_chunk_examples=draw(st.integers(1, 6)),
        r_chunk_units=draw(st.integers(1, 5)),
        codec=draw(st.sampled_from(["lz4", "zstd", "none"])),
        topk=draw(st.integers(0, 4)),
    )
    batches = draw(st.lists(st.lists(st.integers(0, n - 1), min_size=1, max_size=8), min_size=1, max_size=max_steps))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    events: dict[int, tuple[str, int]] = {}
    if with_events:
        kinds = st.sampled_from(["flush", "fold", "fold_tiny", "resume", "flush_resume"])
        events = draw(st.dictionaries(st.integers(0, len(batches) - 1), st.tuples(kinds, st.integers(0, 99))))
    return Run(
        specs=specs,
        num_examples=n,
        batch_share=draw(st.sampled_from(["full", "mean"])),
        layout=layout,
        background=draw(st.booleans()),
        steps=make_steps(rng, specs, batches),
        events=events,
    )


def make_tracked(specs: list[ParamSpec]) -> list[tuple[ParamSpec, torch.nn.Parameter]]:
    return [(s, torch.nn.Parameter(torch.zeros(s.shape))) for s in specs]


def record(rec: Recorder, tracked: list[tuple[ParamSpec, torch.nn.Parameter]], step: Step, t: int) -> None:
    """Set the weights to ``before``, snapshot, move them to ``after`` and journal the step."""
    with torch.no_grad():
        for (_, p), b in zip(tracked, step.before, strict=True):
            p.copy_(torch.from_numpy(b))
    rec.snapshot()
    with torch.no_grad():
        for (_, p), a in zip(tracked, step.after, strict=True):
            p.copy_(torch.from_numpy(a))
    rec.record_step(np.asarray(step.ids), global_step=t, epoch=0)


def create(path: Path, run: Run) -> ResponsibilityStore:
    spec = RecordingSpec(tuple(run.specs), num_examples=run.num_examples, batch_share=run.batch_share)
    return ResponsibilityStore.create(path, spec, layout=run.layout)


def reference(run: Run) -> dict[str, dict[str, np.ndarray]]:
    """R_pos/R_neg/R_abs per parameter, float64, by loops over steps and ids (each occurrence counts)."""
    n = run.num_examples
    out: dict[str, dict[str, np.ndarray]] = {}
    for i, s in enumerate(run.specs):
        pos = np.zeros((n, s.units))
        neg = np.zeros((n, s.units))
        for step in run.steps:
            d = step.after[i].astype(np.float64) - step.before[i].astype(np.float64)
            dp, dn = np.maximum(d, 0.0), np.maximum(-d, 0.0)
            if s.granularity == "neuron":
                dp, dn = dp.reshape(s.units, -1).sum(1), dn.reshape(s.units, -1).sum(1)
            share = 1.0 / len(step.ids) if run.batch_share == "mean" else 1.0
            for m in step.ids:
                pos[m] += share * dp.reshape(-1)
                neg[m] += share * dn.reshape(-1)
        out[s.name] = {"pos": pos, "neg": neg, "abs": pos + neg}
    return out


def rtol_for(run: Run) -> float:
    """A bound on float32 rounding: sums of non-negative terms lose at most ~(terms) ulps relative to the sum."""
    occurrences = max(np.bincount(np.concatenate([s.ids for s in run.steps]), minlength=run.num_examples))
    fan_in = max(s.numel // s.units for s in run.specs)
    return max(1e-5, (int(occurrences) + fan_in + 4) * 2.0**-23)


def check_store(store: ResponsibilityStore, run: Run) -> None:
    """read() equals the reference; most_responsible and column reads are consistent with read()."""
    ref = reference(run)
    rtol = rtol_for(run)
    assert store.steps == len(run.steps)
    ids, counts = store.membership()
    np.testing.assert_array_equal(ids, np.concatenate([s.ids for s in run.steps]))
    np.testing.assert_array_equal(counts, [len(s.ids) for s in run.steps])
    rng = np.random.default_rng(len(run.steps))
    for s in run.specs:
        for sign in SIGNS:
            got = store.read(s.name, sign)
            assert got.shape == (run.num_examples, *s.r_shape)
            assert got.dtype == np.float32
            np.testing.assert_allclose(got.reshape(run.num_examples, -1), ref[s.name][sign], rtol=rtol, atol=1e-37)
            flat = got.reshape(run.num_examples, -1)
            # Ranking is checked against the store's own float32 values, so float64 ties cannot flake.
            k = int(rng.integers(1, run.num_examples + 1))
            top_ids, top_vals = store.most_responsible(s.name, k, sign)
            assert top_ids.shape == top_vals.shape == (k, *s.r_shape)
            order = np.argsort(-flat, axis=0, kind="stable")[:k]
            np.testing.assert_array_equal(top_ids.reshape(k, -1), order, err_msg=f"{s.name} {sign} k={k}")
            np.testing.assert_array_equal(top_vals.reshape(k, -1), np.take_along_axis(flat, order, 0))
            cols = rng.choice(s.units, size=int(rng.integers(1, s.units + 1)), replace=True)
            np.testing.assert_array_equal(store.read(s.name, sign, weights=cols), flat[:, cols])


def execute(path: Path, run: Run) -> ResponsibilityStore:
    """Record ``run`` into a new store at ``path`` with its flushes, folds and resumes; return the store."""
    store = create(path, run)
    tracked = make_tracked(run.specs)
    rec = Recorder(store, tracked, background=run.background)
    committed = [0]  # step counts a checkpoint could have recorded
    fired: set[int] = set()
    t = 0
    while t < len(run.steps):
        record(rec, tracked, run.steps[t], t)
        t += 1
        event = run.events.get(t - 1)
        if event is None or t - 1 in fired:
            continue
        fired.add(t - 1)
        kind, choice = event
        if kind in ("flush", "flush_resume"):
            rec.flush()
            assert store.steps == t
            committed.append(t)
        if kind in ("fold", "fold_tiny"):
            # Folding while the writer thread commits would race on the manifest; a checkpoint flushes first.
            if run.background:
                rec.flush()
            # A tiny budget forces one-column blocks and one-step groups.
            store.fold(budget_bytes=1 if kind == "fold_tiny" else 1 << 20)
        if kind in ("resume", "flush_resume"):
            rec.close()
            store = ResponsibilityStore.open(path, mode="r+")
            t = committed[choice % len(committed)]
            store.rollback(t)
            assert store.steps == t
            rec = Recorder(store, tracked, background=run.background)
    rec.close()
    return store


@SETTINGS
@given(run=runs())
def test_read_and_ranking_match_reference(run: Run) -> None:
    """Any chunking, flushes, folds (also tiny budgets) and resumes give the uninterrupted run's R."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.zarr"
        store = execute(path, run)
        check_store(store, run)
        # A fresh reader sees the same committed state.
        for s in run.specs:
            np.testing.assert_array_equal(ResponsibilityStore.open(path).read(s.name), store.read(s.name))
        # After a final fold everything is served from folded R and the top-k index.
        store.fold()
        check_store(store, run)


@settings(SETTINGS, max_examples=15)
@given(
    run=runs(max_steps=14, with_events=False), split=st.integers(0, 12), budgets=st.tuples(*[st.integers(1, 4096)] * 3)
)
def test_fold_in_pieces_is_bit_identical(run: Run, split: int, budgets: tuple[int, int, int]) -> None:
    """fold, record more, fold == one fold at the end == no fold at all, bit for bit, whatever the budgets."""
    split = min(split, len(run.steps))
    with tempfile.TemporaryDirectory() as tmp:
        a_path, b_path = Path(tmp) / "a.zarr", Path(tmp) / "b.zarr"
        store = create(a_path, run)
        tracked = make_tracked(run.specs)
        rec = Recorder(store, tracked, background=run.background)
        for t in range(split):
            record(rec, tracked, run.steps[t], t)
        rec.flush()
        shutil.copytree(a_path, b_path)
        store.fold(budget_bytes=budgets[0])
        twin = ResponsibilityStore.open(b_path, mode="r+")
        twin_rec = Recorder(twin, tracked, background=run.background)
        for t in range(split, len(run.steps)):
            record(rec, tracked, run.steps[t], t)
            record(twin_rec, tracked, run.steps[t], t)
        rec.close()
        twin_rec.close()
        unfolded = {(s.name, sign): twin.read(s.name, sign) for s in run.specs for sign in SIGNS}
        store.fold(budget_bytes=budgets[1])
        twin.fold(budget_bytes=budgets[2])
        for s in run.specs:
            for sign in SIGNS:
                a, b = store.read(s.name, sign), twin.read(s.name, sign)
                np.testing.assert_array_equal(a, b, err_msg=f"{s.name} {sign}")
                np.testing.assert_array_equal(a, unfolded[(s.name, sign)], err_msg=f"{s.name} {sign} (lazy)")
                k = min(run.num_examples, max(1, run.layout.topk))
                for x, y in zip(
                    store.most_responsible(s.name, k, sign), twin.most_responsible(s.name, k, sign), strict=True
                ):
                    np.testing.assert_array_equal(x, y)
            # Anchor to the independent reference too, so two identically wrong stores cannot pass.
            ref = reference(run)[s.name]["abs"]
            got = store.read(s.name).reshape(run.num_examples, -1)
            np.testing.assert_allclose(got, ref, rtol=rtol_for(run), atol=1e-37)
