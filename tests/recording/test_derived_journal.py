"""journal_delta="derived": plain SGD's per-example steps journal the scale c with Δw = c · Σ_j g_j instead of Δw."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import IndexedData, PerExampleReference, TinyNet, assert_same_store, fit_resumable, make_trainer
from torch.utils.data import DataLoader

from responsibility import ResponsibilityCallback, ResponsibilityStore, StoreCorruptError
from responsibility.kernels.shares import shares
from responsibility.recording.derived import TOLERANCE, derived_scale
from responsibility.recording.unit_shares import unit_shares
from responsibility.store import Layout
from responsibility.store.spec import ParamSpec, RecordingSpec

N = 24
LR = 0.1


def record(tmp_path, model, *callbacks, name="s.zarr", epochs=2, **kw) -> ResponsibilityStore:
    cb = ResponsibilityCallback(tmp_path / name, attribution="per_example", **kw)
    torch.manual_seed(1)
    loader = DataLoader(IndexedData(N), batch_size=6, shuffle=True)
    make_trainer(tmp_path, [cb, *callbacks], max_epochs=epochs).fit(model, loader)
    return ResponsibilityStore.open(tmp_path / name)


class NudgedSGD(torch.optim.SGD):
    """Plain SGD that moves every weight by a further 1e-3 at odd steps: those steps are no multiple of Σ_j g_j."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.count = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        if self.count % 2:
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(1e-3)
        self.count += 1
        return loss


class NudgedNet(TinyNet):
    def configure_optimizers(self):
        return NudgedSGD(self.parameters(), lr=LR)


# ---------------------------------------------------------------------------------------------- the check and the split
def test_derived_scale_hand_computed():
    w = torch.tensor([0.5, -1.0, 2.0])  # largest |w| = 2: the bound is 2 · 2^-20
    g = torch.tensor([1.0, -2.0, 4.0])
    assert float(derived_scale(-0.25 * g, g, w)) == -0.25  # exactly a multiple: c = <Δw, G> / <G, G>
    off = -0.25 * g + torch.tensor([0.0, 1.5 * TOLERANCE * 2, 0.0])  # one weight 1.5x the bound away
    assert float(derived_scale(off, g, w)) == float("inf")
    near = -0.25 * g + torch.tensor([0.0, 0.5 * TOLERANCE * 2, 0.0])  # within the bound: still derived
    assert np.isfinite(float(derived_scale(near, g, w)))
    assert float(derived_scale(torch.zeros(3), torch.zeros(3), w)) == float("inf")  # no gradient: 0/0, stored
    nan = torch.tensor([float("nan"), 0.0, 0.0])
    assert float(derived_scale(nan, g, w)) == float("inf")


def test_derived_scale_of_a_large_unaligned_row():
    """A journal row's Δw starts anywhere in the buffer: over fc1 of the paper CNN (692,224 weights) at an offset
    of one float, torch.dot's float32 sum was off by 1e-4 of c, 100x the bound; the scale must still be found."""
    torch.manual_seed(0)
    g = (torch.randn(128, 64) @ torch.relu(torch.randn(64, 5408))).reshape(-1) * 1e-3
    w = torch.randn(g.shape) * 0.05
    buf = torch.zeros(len(g) + 1)
    delta = buf[1:]  # 4 bytes past the buffer's start
    delta.copy_((w - 0.05 * g) - w)
    c = float(derived_scale(delta, g, w - 0.05 * g))
    assert abs(c + 0.05) <= 1e-6 * 0.05


def test_shares_of_derived_and_mixed_steps_hand_computed():
    grads = torch.tensor([[1.0, 2.0], [3.0, -2.0], [1.0, 1.0]])
    row, counts = torch.tensor([0, 0, 1]), torch.tensor([2, 1])
    # Every step derived: c · g_j, with c = -0.5 at step 0 and 2 at step 1.
    got = shares(None, grads, row, counts, "gradient", torch.tensor([-0.5, 2.0]))
    np.testing.assert_array_equal(got, [[-0.5, -1.0], [-1.5, 1.0], [2.0, 2.0]])
    # Step 0 derived (its Δw zeroed), step 1 journaled: Δw = (4, 8) goes wholly to its one example.
    delta = torch.tensor([[0.0, 0.0], [4.0, 8.0]])
    got = shares(delta, grads, row, counts, "gradient", torch.tensor([-0.5, 0.0]))
    np.testing.assert_array_equal(got, [[-0.5, -1.0], [-1.5, 1.0], [4.0, 8.0]])


@pytest.mark.parametrize("form", ["outer", "dense"])
def test_derived_unit_shares_are_the_derived_shares_summed_per_unit(form):
    """At neuron granularity a derived step's shares are c · g_j summed per unit by sign: against the weight-level
    shares of the same step (inputs of both signs, so every product of the factors' signs occurs)."""
    g = torch.Generator().manual_seed(0)
    out, inp = torch.randn(5, 3, generator=g), torch.randn(5, 4, generator=g)
    grads = (out[:, :, None] * inp[:, None, :]).reshape(5, 12)  # g_j = δ_j a_jᵀ, flat
    values = torch.cat([out, inp], 1) if form == "outer" else grads
    c = torch.tensor(-0.05)
    got = unit_shares(values, torch.full((3, 4), float("nan")), form, (3, 4), "gradient", scale=c)
    per_weight = shares(None, grads, torch.zeros(5, dtype=torch.int64), torch.tensor([5]), "gradient", c[None])
    want = torch.cat([per_weight.clamp(min=0), per_weight.clamp(max=0).neg()], 1).reshape(5, 2, 3, 4).sum(3)
    torch.testing.assert_close(got, want.reshape(5, 6), rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------------------------- end to end
def test_plain_sgd_derived_store_holds_each_examples_own_update(tmp_path):
    """Against the float64 reference of -lr·g_j/B, and closer to it than the journal of Δw (whose float32 rounding
    the ratio Δw/Σ_j g_j carries); no chunk of journal/rows is written."""
    ref = PerExampleReference(N, "gradient", sgd_exact_lr=LR)
    store = record(tmp_path, TinyNet(optimizer="sgd", lr=LR), ref, journal_delta="derived")
    stored = record(tmp_path, TinyNet(optimizer="sgd", lr=LR), name="stored.zarr")
    assert store.layout.journal_delta == "derived" and stored.layout.journal_delta == "stored"
    scales = store.journal_scales()
    assert scales is not None and scales.shape == (store.steps, 4) and stored.journal_scales() is None
    # The captured g_j are gradients of the batch's mean loss (1/B included): Σ_j g_j is the batch gradient, c = -lr.
    np.testing.assert_allclose(scales, -LR, rtol=1e-5)
    assert not (tmp_path / "s.zarr" / "journal" / "rows" / "c").exists()  # no chunk of Δw written
    assert (tmp_path / "stored.zarr" / "journal" / "rows" / "c").exists()
    rows, _, _ = store.journal_rows(0, store.steps)
    assert np.isnan(rows).all()  # nothing journaled: every step derived
    for name in store.parameters:
        for sign in ("pos", "neg"):
            want = ref.get(name, sign)
            got, old = store.read(name, sign), stored.read(name, sign)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max(), err_msg=name)
            assert np.abs(got - want).max() <= np.abs(old - want).max()


def test_neuron_granularity_derives_the_per_unit_shares(tmp_path):
    """Every parameter per unit: each step's check passes, no row is written, and R is the per-unit sums of
    -lr·g_j/B; with odd steps nudged, those take the ratios, and R is the gradient rule's."""
    units = {n: "neuron" for n in ("net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias")}
    ref = PerExampleReference(N, "gradient", sgd_exact_lr=LR, granularity=units)
    store = record(tmp_path, TinyNet(optimizer="sgd", lr=LR), ref, granularity="neuron", journal_delta="derived")
    scales = store.journal_scales()
    assert scales is not None and np.isfinite(scales).all()
    assert not (tmp_path / "s.zarr" / "journal" / "rows" / "c").exists()
    nudged_ref = PerExampleReference(N, "gradient", granularity=units)
    opts = dict(granularity="neuron", journal_delta="derived", share_rule="gradient")
    nudged = record(tmp_path, NudgedNet(), nudged_ref, name="nudged.zarr", **opts)
    nudged_scales = nudged.journal_scales()
    assert nudged_scales is not None
    even = np.arange(nudged.steps) % 2 == 0
    np.testing.assert_array_equal(np.isfinite(nudged_scales), np.broadcast_to(even[:, None], nudged_scales.shape))
    for s, r, rtol in ((store, ref, 1e-5), (nudged, nudged_ref, 2e-3)):
        for name in s.parameters:
            for sign in ("pos", "neg"):
                want = r.get(name, sign)
                got = s.read(name, sign)
                np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6 * np.abs(want).max(), err_msg=name)


def test_each_step_sums_to_within_the_bound_of_its_applied_change(tmp_path):
    """Σ over examples of R_pos - R_neg is Σ_steps of the shares' sum: c · Σ_j g_j in a derived store, the
    applied Δw in a stored one; they differ by at most TOLERANCE · max|w| per step (plus float32 sums)."""
    derived = record(tmp_path, TinyNet(optimizer="sgd", lr=LR), journal_delta="derived")
    stored = record(tmp_path, TinyNet(optimizer="sgd", lr=LR), name="stored.zarr")
    max_w = (
        max(float(p.detach().abs().max()) for p in TinyNet().parameters()) + 1.0
    )  # a generous bound on |w| in training
    for name in derived.parameters:
        net = [(s.read(name, "pos") - s.read(name, "neg")).astype(np.float64).sum(0) for s in (derived, stored)]
        applied = sum(stored.param_rows(name)["delta"]).reshape(net[1].shape)
        slack = 1e-5 * np.abs(applied).max()
        np.testing.assert_allclose(net[1], applied, atol=slack)  # the stored store's shares sum to Δw
        assert np.abs(net[0] - net[1]).max() <= derived.steps * TOLERANCE * max_w + 2 * slack


def test_steps_that_are_no_multiple_journal_their_change(tmp_path):
    """Odd steps move every weight by a further 1e-3: they journal Δw, even ones their scale, in the same chunk
    rows; R is the reference's, and the running sums, the fold from the journal and lazy reads agree bit for bit."""
    ref = PerExampleReference(N, "gradient")
    opts = dict(journal_delta="derived", share_rule="gradient")
    store = record(tmp_path, NudgedNet(), ref, fold="always", **opts)
    lazy = record(tmp_path, NudgedNet(), name="lazy.zarr", fold="never", **opts)
    scales = store.journal_scales()
    assert scales is not None and store.layout.chunk_steps > 2
    even = np.arange(store.steps) % 2 == 0
    np.testing.assert_array_equal(np.isfinite(scales), np.broadcast_to(even[:, None], scales.shape))
    rows, _, _ = store.journal_rows(0, store.steps)
    assert not np.isnan(rows[~even]).any() and np.isnan(rows[even]).all()
    shown = subprocess.run(
        [sys.executable, "-m", "responsibility.cli", "inspect", str(tmp_path / "s.zarr")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"derived Δw   {4 * int(even.sum())} of {4 * store.steps} parameter steps" in shown
    summed = {(n, s): store.read(n, s) for n in store.parameters for s in ("pos", "neg")}
    for (name, sign), value in summed.items():
        want = ref.get(name, sign)
        np.testing.assert_allclose(value, want, rtol=2e-3, atol=1e-5 * np.abs(want).max(), err_msg=name)
        np.testing.assert_array_equal(lazy.read(name, sign), value, err_msg=f"lazy {name} {sign}")
    again = ResponsibilityStore.open(tmp_path / "s.zarr", mode="r+")
    again.fold()  # from the journal this time
    for (name, sign), value in summed.items():
        np.testing.assert_array_equal(again.read(name, sign), value, err_msg=f"{name} {sign}")


@pytest.mark.parametrize(
    ("trainer", "derived"),
    [
        ({"accumulate_grad_batches": 2}, True),  # Σ_j g_j over both micro-batches; the loss is halved, c = -lr
        ({"gradient_clip_val": 0.05, "gradient_clip_algorithm": "norm"}, True),  # c = -lr times each step's coefficient
        ({"gradient_clip_val": 0.01, "gradient_clip_algorithm": "value"}, False),  # clipped per weight: no multiple
    ],
    ids=["accumulation", "norm clipping", "value clipping"],
)
def test_lightning_gradient_handling(tmp_path, trainer, derived):
    """What Lightning does to gradients between backward and step: steps stay derived where Δw is still a multiple
    of Σ_j g_j, journal Δw where not. The signed R of all examples adds up to the weights' total change (within the
    bound per derived step), and R is the gradient rule's: exactly where Δw is journaled, and where derived up to the
    ratio's rounding that c · g_j does not carry."""
    ref = PerExampleReference(N, "gradient")
    cb = ResponsibilityCallback(tmp_path / "s.zarr", attribution="per_example", journal_delta="derived")
    torch.manual_seed(1)
    loader = DataLoader(IndexedData(N), batch_size=3, shuffle=True)
    model = TinyNet(optimizer="sgd", lr=LR)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    make_trainer(tmp_path, [cb, ref], max_epochs=2, **trainer).fit(model, loader)
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    scales = store.journal_scales()
    assert scales is not None
    if derived:
        assert np.isfinite(scales).all()
        if "gradient_clip_val" in trainer:  # the coefficient shrinks some steps: c is -lr · coefficient there
            assert (scales > -LR * (1 - 1e-4)).any() and (scales >= -LR * (1 + 1e-5)).all()
        else:
            np.testing.assert_allclose(scales, -LR, rtol=1e-5)
    else:
        assert np.isinf(scales).mean() > 0.5
    max_w = max(
        max(float(v.abs().max()) for v in start.values()),
        max(float(v.abs().max()) for v in model.state_dict().values()),
    )
    for name, value in model.state_dict().items():
        signed = (store.read(name, "pos") - store.read(name, "neg")).sum(0, dtype=np.float64)
        change = (value - start[name]).double().numpy()
        assert np.abs(signed - change).max() <= store.steps * TOLERANCE * max_w + 1e-5 * np.abs(change).max()
        for sign in ("pos", "neg"):
            want = ref.get(name, sign)
            rtol = 1e-2 if derived else 2e-3
            np.testing.assert_allclose(store.read(name, sign), want, rtol=rtol, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("lost", ["journal/rows", "journal/scales"])
def test_a_lost_chunk_of_a_derived_store_is_still_found(tmp_path, lost):
    """Fill values are allowed only in a derived step's cells: a lost chunk holding journaled Δw, or the scales
    themselves, still reads as damage."""
    record(tmp_path, NudgedNet(), journal_delta="derived", share_rule="gradient", fold="never")
    chunks = sorted(p for p in (tmp_path / "s.zarr" / lost / "c").rglob("*") if p.is_file())
    assert chunks
    chunks[0].unlink()
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    with pytest.raises(StoreCorruptError, match="missing"):
        store.read("net.0.weight", "pos")


def test_with_momentum_every_step_journals_its_change_bit_for_bit(tmp_path):
    """No step of SGD with momentum is a multiple of its gradient: all journal Δw, and R is the stored store's."""
    derived = record(tmp_path, TinyNet(optimizer="momentum"), journal_delta="derived", share_rule="gradient")
    stored = record(tmp_path, TinyNet(optimizer="momentum"), name="b.zarr", share_rule="gradient")
    scales = derived.journal_scales()
    assert scales is not None and np.isinf(scales).all()
    for name in derived.parameters:
        for sign in ("pos", "neg"):
            np.testing.assert_array_equal(derived.read(name, sign), stored.read(name, sign))


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
def test_resume_mid_chunk_is_bit_identical_to_an_uninterrupted_run(tmp_path, granularity):
    opts = dict(attribution="per_example", journal_buffer_mb=0.006, journal_delta="derived", granularity=granularity)
    fit_resumable(tmp_path / "a", tmp_path / "a.zarr", 2, **opts)
    fit_resumable(tmp_path / "b", tmp_path / "b.zarr", 1, **opts)
    fit_resumable(tmp_path / "b", tmp_path / "b.zarr", 2, ckpt_path=tmp_path / "b" / "ckpt" / "last.ckpt", **opts)
    b = ResponsibilityStore.open(tmp_path / "b.zarr")
    assert b.steps == 20 and 10 % b.layout.chunk_steps != 0  # the resume reloaded a partly written chunk row
    scales = b.journal_scales()
    assert scales is not None and np.isfinite(scales).all()
    assert_same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")


# ---------------------------------------------------------------------------------------------- bad settings
def test_settings_that_cannot_derive_are_refused_early(tmp_path):
    for kw in ({"attribution": "uniform"}, {"share_rule": "magnitude"}):
        with pytest.raises(ValueError, match="journal_delta='derived'"):
            ResponsibilityCallback(tmp_path / "a.zarr", journal_delta="derived", **kw)
    with pytest.raises(ValueError, match="journal_delta must be one of 'stored', 'derived'"):
        ResponsibilityCallback(tmp_path / "a.zarr", journal_delta="scaled")
    cb = ResponsibilityCallback(tmp_path / "a.zarr", journal_delta="derived")
    loader = DataLoader(IndexedData(N), batch_size=6)
    with pytest.raises(ValueError, match="needs plain SGD"):
        make_trainer(tmp_path, [cb], max_epochs=1).fit(TinyNet(optimizer="adam"), loader)
    assert not (tmp_path / "a.zarr").exists()
    spec = RecordingSpec((ParamSpec("w", (2, 3), example_form="outer"),), 4, attribution="per_example")
    with pytest.raises(ValueError, match="share rule 'gradient'"):
        ResponsibilityStore.create(
            tmp_path / "m.zarr",
            RecordingSpec(spec.params, 4, attribution="per_example", share_rule="magnitude"),
            layout=Layout(journal_delta="derived"),
        )
    store = ResponsibilityStore.create(tmp_path / "d.zarr", spec, layout=Layout(journal_delta="derived"))
    rows, ids, steps = np.zeros((1, 6), np.float32), np.array([0, 1]), np.array([[2, 0, 0, 0]])
    examples = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match="needs .* scales"):
        store.write_journal(0, rows, ids, 0, steps, examples)
    with pytest.raises(ValueError, match="needs .* scales"):
        store.write_journal(0, rows, ids, 0, steps, examples, np.full((1, 1), np.nan, np.float32))
    assert store.steps == 0
