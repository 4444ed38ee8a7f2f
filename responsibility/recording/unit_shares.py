"""Per-example attribution at neuron granularity: each example's share of a step's Δw, summed per unit.

A unit (output unit, dim 0 of the weight) keeps the positive and the negative parts of its weights' shares
separately, as the uniform rule does: ``pos_j[o] = Σ_i max(share_j[o, i], 0)`` and ``neg_j[o] = Σ_i
max(-share_j[o, i], 0)``, with ``share_j = Δw ⊙ w_j / Σ_k w_k`` (``w_j = g_j`` for the "gradient" rule, ``|g_j|``
for "magnitude"; Δw split evenly where the ratio is not finite), the same shares the fold forms at weight
granularity (:func:`responsibility.kernels.shares.shares`). They are computed in the step, where Δw and the
examples' gradients are at hand, so the journal keeps ``2 · units`` values per example and the fold only
scatter-adds them.

For a Linear weight with (batch, features) inputs ``w_j[o, i] = δ_jo a_ji`` and the sums factor: with
``S = Δw / Σ_k w_k`` split by sign (``S⁺``, ``S⁻``) and the inputs too (``a⁺``, ``a⁻``),
``Σ_i max(S[o, i] δ_jo a_ji, 0) = δ⁺_jo P_jo + δ⁻_jo Q_jo`` where ``P = a⁺ S⁺ᵀ + a⁻ S⁻ᵀ`` and
``Q = a⁻ S⁺ᵀ + a⁺ S⁻ᵀ`` (a product is positive exactly when its factors' signs agree). That is two matrix products
of the step's inputs with the (units, inputs) ratios (one pair when the inputs are non-negative: after a ReLU, and
always for "magnitude"), and one more for ``Σ_k w_k``: no (examples, units, inputs) tensor is formed. Other
parameters have dense per-example gradients, and the shares are formed directly.
"""

from __future__ import annotations

import torch

from responsibility.choices import ExampleForm, ShareRule

__all__ = ["unit_shares"]


def unit_shares(
    values: torch.Tensor, delta: torch.Tensor, form: ExampleForm, shape: tuple[int, ...], rule: ShareRule
) -> torch.Tensor:
    """``(B, 2 · units)``: each example's positive, then negative, share of ``delta`` summed per unit.

    ``values`` holds the step's B examples' captured gradients of a parameter of ``shape``: ``"outer"`` factors
    (B, out + in) of a Linear weight, or ``"dense"`` gradients (B, numel); the result has their dtype.
    """
    units = shape[0] if shape else 1
    d = delta.detach().to(values.dtype).reshape(units, -1)
    n = len(values)
    if form == "outer":
        out, inp = values[:, :units], values[:, units:]
        if rule == "magnitude":
            out, inp = out.abs(), inp.abs()
        scale, even = _ratios(d, out.T @ inp, n)
        s_pos = scale.clamp(min=0)
        s_neg = s_pos - scale  # max(-scale, 0), in one pass
        if bool((inp >= 0).all()):  # inputs after a ReLU, or |a| (magnitude rule): a⁻ = 0, half the work
            pq = torch.cat([inp @ s_pos.T, inp @ s_neg.T], 1)
        else:  # [P | Q] = [a⁺ | a⁻] @ [[S⁺ᵀ, S⁻ᵀ], [S⁻ᵀ, S⁺ᵀ]] in one product
            a_pos, a_neg = inp.clamp(min=0), inp.clamp(max=0).neg_()
            blocks = torch.cat([torch.cat([s_pos, s_neg], 0), torch.cat([s_neg, s_pos], 0)], 1)
            pq = torch.cat([a_pos, a_neg], 1) @ blocks.T
        p, q = pq[:, :units], pq[:, units:]
        o_pos, o_neg = out.clamp(min=0), out.clamp(max=0).neg_()
        pos, neg = o_pos * p + o_neg * q, o_pos * q + o_neg * p
    else:
        grads = values.reshape(n, units, -1)
        weight = grads.abs() if rule == "magnitude" else grads
        scale, even = _ratios(d, weight.sum(0), n)
        share = weight * scale
        pos, neg = share.clamp(min=0).sum(2), share.clamp(max=0).sum(2).neg_()
    if even is not None:  # the evenly split weights add the same amount to every example of the step
        pos = pos + even.clamp(min=0).sum(1)
        neg = neg + even.clamp(max=0).sum(1).neg()
    return torch.cat([pos, neg], 1)


def _ratios(delta: torch.Tensor, denom: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``Δw / Σ_k w_k`` where finite (else 0), and the evenly split ``Δw / n`` where not (else 0; None when every
    ratio is finite, the usual case, which saves the passes over the weights)."""
    scale = delta / denom
    usable = torch.isfinite(scale)
    if bool(usable.all()):
        return scale, None
    zero = torch.zeros((), dtype=scale.dtype, device=scale.device)
    return torch.where(usable, scale, zero), torch.where(usable, zero, delta / n)
