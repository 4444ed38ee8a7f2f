"""Per-unit shares formed in the step equal the per-weight shares of the fold summed per unit, by sign."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from responsibility.kernels.shares import shares
from responsibility.recording.unit_shares import unit_shares


def per_weight_then_summed(grads: torch.Tensor, delta: torch.Tensor, rule: str) -> torch.Tensor:
    """The fold's per-weight shares (kernels.shares) of one step, their positive and negative parts summed per unit."""
    n, units = len(grads), delta.shape[0]
    share = shares(
        delta.reshape(1, -1), grads.reshape(n, -1), torch.zeros(n, dtype=torch.int64), torch.tensor([n]), rule
    )
    share = share.reshape(n, units, -1)
    return torch.cat([share.clamp(min=0).sum(2), share.clamp(max=0).sum(2).neg()], 1)


@pytest.mark.parametrize("rule", ["gradient", "magnitude"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("relu", [False, True])  # non-negative inputs take the shorter product
def test_outer_factors_per_unit_equal_summed_weight_shares(rule, seed, relu):
    g = torch.Generator().manual_seed(seed)
    n, units, inputs = 5, 4, 7
    out = torch.randn(n, units, generator=g, dtype=torch.float64)
    inp = torch.randn(n, inputs, generator=g, dtype=torch.float64)
    inp[:, 2] = 0  # no example has a gradient on input 2: its weights' Δw is split evenly
    out[:, 1] = 0  # nor on unit 1
    inp[inp > 1.2] = 0  # sparse inputs
    if relu:
        inp = inp.clamp(min=0)
    delta = torch.randn(units, inputs, generator=g, dtype=torch.float64)
    grads = out[:, :, None] * inp[:, None, :]
    got = unit_shares(torch.cat([out, inp], 1), delta, "outer", (units, inputs), rule)
    np.testing.assert_allclose(got, per_weight_then_summed(grads, delta, rule), rtol=1e-10, atol=1e-12)
    # The signed unit sums add up to the unit's Δw over the step's examples.
    np.testing.assert_allclose((got[:, :units] - got[:, units:]).sum(0), delta.sum(1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", ["gradient", "magnitude"])
def test_dense_gradients_per_unit_equal_summed_weight_shares(rule):
    g = torch.Generator().manual_seed(0)
    shape = (3, 2, 2, 2)  # a conv weight
    grads = torch.randn(6, *shape, generator=g, dtype=torch.float64)
    grads[:, 0, 1] = 0
    delta = torch.randn(shape, generator=g, dtype=torch.float64)
    got = unit_shares(grads.reshape(6, -1), delta, "dense", shape, rule)
    np.testing.assert_allclose(got, per_weight_then_summed(grads, delta, rule), rtol=1e-10, atol=1e-12)


def test_hand_computed_unit():
    """One unit, two inputs, two examples, gradient rule: shares Δw·g_j/Σg by weight, then summed by sign."""
    out = torch.tensor([[1.0], [2.0]])
    inp = torch.tensor([[1.0, -1.0], [1.0, 1.0]])  # g_0 = [1, -1], g_1 = [2, 2]; Σg = [3, 1]
    delta = torch.tensor([[3.0, 1.0]])  # ratios [1, 1]: share_0 = [1, -1], share_1 = [2, 2]
    got = unit_shares(torch.cat([out, inp], 1), delta, "outer", (1, 2), "gradient")
    assert got.tolist() == [[1.0, 1.0], [4.0, 0.0]]


@pytest.mark.parametrize("sign", [-1.0, 1.0])  # plain SGD's ratios are all -lr; every ratio of one sign either way
@pytest.mark.parametrize("relu", [False, True])
def test_ratios_of_one_sign_equal_summed_weight_shares(sign, relu):
    g = torch.Generator().manual_seed(7)
    n, units, inputs = 6, 5, 9
    out = torch.randn(n, units, generator=g, dtype=torch.float64)
    inp = torch.randn(n, inputs, generator=g, dtype=torch.float64)
    if relu:
        inp = inp.clamp(min=0)
    grads = out[:, :, None] * inp[:, None, :]
    # Δw = sign · lr · Σ_k g_k, with the rounding a real step adds: ratios all of one sign, not all equal.
    delta = sign * 0.1 * grads.sum(0) * (1 + 1e-3 * torch.rand(units, inputs, generator=g, dtype=torch.float64))
    got = unit_shares(torch.cat([out, inp], 1), delta, "outer", (units, inputs), "gradient")
    np.testing.assert_allclose(got, per_weight_then_summed(grads, delta, "gradient"), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", ["gradient", "magnitude"])
@pytest.mark.parametrize("form", ["outer", "dense"])
def test_reused_scratch_space_gives_the_same_floats(rule, form):
    """Scratch space carried from step to step (as the recorder does) changes nothing, non-finite ratios included."""
    g = torch.Generator().manual_seed(3)
    n, units, inputs = 6, 4, 5
    scratch = torch.empty(2, units, inputs)
    for step in range(3):
        out = torch.randn(n, units, generator=g)
        inp = torch.randn(n, inputs, generator=g).clamp(min=0)
        inp[:, step] = 0  # no example has a gradient on this input
        delta = torch.randn(units, inputs, generator=g)  # moved anyway there (decay): split evenly
        values = torch.cat([out, inp], 1)
        if form == "dense":
            values = (out[:, :, None] * inp[:, None, :]).reshape(n, -1)
        want = unit_shares(values, delta, form, (units, inputs), rule)
        got = unit_shares(values, delta, form, (units, inputs), rule, scratch)
        assert torch.equal(got, want)
        np.testing.assert_allclose(
            (got[:, :units] - got[:, units:]).sum(0), delta.sum(1), rtol=1e-5, atol=1e-6
        )  # the step's shares still add up to Δw per unit


def test_weights_no_example_reached_and_that_did_not_move_take_no_share():
    """Plain SGD at a dead unit or input: Σ_k g_k = 0 and Δw = 0, so the ratio is 0/0; nothing is split there, and
    every other weight's shares are as the fold forms them."""
    g = torch.Generator().manual_seed(11)
    n, units, inputs = 6, 5, 8
    out = torch.randn(n, units, generator=g, dtype=torch.float64)
    inp = torch.randn(n, inputs, generator=g, dtype=torch.float64).clamp(min=0)
    out[:, 3] = 0  # a unit no example reached
    inp[:, 1] = 0  # an input no example reached
    grads = out[:, :, None] * inp[:, None, :]
    delta = -0.1 * grads.sum(0) * (1 + 1e-3 * torch.rand(units, inputs, generator=g, dtype=torch.float64))
    assert bool((delta[3] == 0).all()) and bool((delta[:, 1] == 0).all())
    got = unit_shares(torch.cat([out, inp], 1), delta, "outer", (units, inputs), "gradient")
    assert bool(torch.isfinite(got).all())
    assert bool((got[:, [3, units + 3]] == 0).all())
    np.testing.assert_allclose(got, per_weight_then_summed(grads, delta, "gradient"), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_weight_change_gives_non_finite_shares(bad):
    """A NaN or Inf in Δw must reach the journal row, where the recorder flags the step, not be zeroed as 0/0."""
    g = torch.Generator().manual_seed(5)
    n, units, inputs = 4, 3, 5
    out = torch.randn(n, units, generator=g)
    inp = torch.randn(n, inputs, generator=g).clamp(min=0)
    inp[:, 0] = 0  # 0/0 ratios elsewhere in the same step
    delta = -0.1 * (out[:, :, None] * inp[:, None, :]).sum(0)
    delta[1, 2] = bad
    scratch = torch.empty(2, units, inputs)
    got = unit_shares(torch.cat([out, inp], 1), delta, "outer", (units, inputs), "gradient", scratch)
    assert not bool(torch.isfinite(got).all())
