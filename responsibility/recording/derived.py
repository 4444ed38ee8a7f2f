"""Plain SGD's Δw from the examples' gradients: the scale ``c`` with ``Δw = c · G``, checked at every step.

With plain SGD a step is ``Δw = -lr · G`` (``G`` the batch gradient, the sum of the examples' gradients the
journal keeps anyway), times the clipping coefficient under norm clipping and ``1/S`` under loss scaling. So a
parameter recorded per example needs one number per step instead of its Δw row: a store made with
``journal_delta="derived"`` journals ``c`` (``journal/scales``) and each example's share of the step is
``c · g_j`` (:func:`responsibility.kernels.shares.shares`; summed per unit at neuron granularity,
:mod:`responsibility.recording.unit_shares`).

The applied Δw is ``(w - lr·G) - w`` in float32, so it differs from ``c · G`` by the rounding of the update, about
one unit in the last place of the weight. A step is derived when every weight is within
``TOLERANCE · max|w|`` of it (max over the parameter): :data:`TOLERANCE` is 2^-20, 8 to 16 units in the last place
of the parameter's largest weight. Momentum, weight decay, per-value clipping or Adam fail the check, and such a
step journals its Δw as a stored store does (``c`` = inf).
"""

from __future__ import annotations

import torch

__all__ = ["TOLERANCE", "derived_scale", "gradient_sum"]

TOLERANCE = 2.0**-20


def derived_scale(
    delta: torch.Tensor, grad_sum: torch.Tensor, weight: torch.Tensor, scratch: torch.Tensor | None = None
) -> torch.Tensor:
    """``c`` (a 0-dim float32 tensor on ``delta``'s device) with ``delta`` within ``TOLERANCE · max|weight|`` of
    ``c · grad_sum`` everywhere, or inf when no such ``c`` (the least-squares one) exists. No host sync.
    ``scratch``: float32 space of ``delta``'s size and device for the temporaries, reused from step to step (fresh
    multi-MB temporaries cost page faults: the check took twice as long in a fit)."""
    d, g = delta.reshape(-1).float(), grad_sum.reshape(-1).float()
    s = torch.empty_like(d) if scratch is None else scratch.view(-1)
    # Products summed pairwise: on a row not 16-byte aligned (a journal row starts anywhere in its buffer),
    # torch.dot's float32 sum over fc1 of the paper CNN (692,224 weights) put c off by 1e-4, 100x the bound.
    # NaN when G = 0: Δw must be 0 then, and the check fails.
    c = torch.mul(d, g, out=s).sum() / torch.mul(g, g, out=s).sum()
    lo, hi = torch.aminmax(torch.addcmul(d, g, c, value=-1, out=s))
    w_lo, w_hi = torch.aminmax(weight.detach().reshape(-1).float())
    bound = torch.maximum(w_hi, -w_lo) * TOLERANCE
    ok = (hi <= bound) & (-lo <= bound)  # False for NaN anywhere
    return torch.where(ok, c, torch.full_like(c, float("inf")))


def gradient_sum(values: torch.Tensor, form: str, shape: tuple[int, ...]) -> torch.Tensor:
    """``Σ_j g_j`` (the shape of the parameter) from a step's captured per-example ``values``: the two factors of
    an ``"outer"`` Linear weight ``(B, out + in)``, or ``"dense"`` gradients ``(B, numel)``."""
    if form == "outer":
        units = shape[0]
        return values[:, :units].T @ values[:, units:]
    return values.sum(0).reshape(shape)
