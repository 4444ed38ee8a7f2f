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
of the step's inputs with the (units, inputs) ratios, fewer when factors are zero (non-negative inputs after a ReLU
or under "magnitude"; ratios of one sign, as plain SGD's are), and one more for ``Σ_k w_k``, unless the rule is
"gradient" and autograd's product for the layer's calls (the weight's gradient from them) is at hand: no
(examples, units, inputs) tensor is formed. Other parameters have dense per-example gradients, and the shares are
formed directly.

A derived journal's step (``journal_delta="derived"``, plain SGD: Δw = c · Σ_k g_k, checked) has ``share_j = c · g_j``,
and for a Linear weight the sums need only each example's summed inputs by sign: ``x⁺ A⁺ + x⁻ A⁻`` with ``x = c δ_j``
and ``A^± = Σ_i a^±_ji``, no product with the inputs.
"""

from __future__ import annotations

import torch

from responsibility.choices import ExampleForm, ShareRule

__all__ = ["unit_shares"]

_INF = float("inf")


def unit_shares(
    values: torch.Tensor,
    delta: torch.Tensor,
    form: ExampleForm,
    shape: tuple[int, ...],
    rule: ShareRule,
    scratch: torch.Tensor | None = None,
    weight_sums: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(B, 2 · units)``: each example's positive, then negative, share of ``delta`` summed per unit.

    ``values`` holds the step's B examples' captured gradients of a parameter of ``shape``: ``"outer"`` factors
    (B, out + in) of a Linear weight, or ``"dense"`` gradients (B, numel); the result has their dtype.
    ``scratch``: optional (2, units, numel / units) space of that dtype and device, reused from step to step (a
    fresh multi-MB temporary per step costs page faults). ``weight_sums``: for "outer" values and the rule
    "gradient", ``Σ_k w_k`` when already at hand, (units, inputs), float32: the batch's weight gradient, which
    autograd has formed (:attr:`ExampleGradients.weight_grads
    <responsibility.recording.per_example.ExampleGradients.weight_grads>`); it is overwritten. ``scale``: a derived
    journal's c with Δw = c · Σ_k g_k (:mod:`responsibility.recording.derived`, rule "gradient"): each share is
    then ``c · g_j``, and ``delta`` is not used.
    """
    units = shape[0] if shape else 1
    if scale is not None:
        return _derived_unit_shares(values, scale, form, units)
    d = delta.detach().to(values.dtype).reshape(units, -1)
    n = len(values)
    spare = None if scratch is None else scratch[1]
    if form == "outer":
        out, inp = values[:, :units], values[:, units:]
        if rule == "magnitude":
            out, inp = out.abs(), inp.abs()
        if weight_sums is not None and rule == "gradient":
            denom = weight_sums.view(units, -1)
        else:
            denom = torch.mm(out.T, inp, out=scratch[0]) if scratch is not None else out.T @ inp
        scale, bounds, even = _ratios(d, denom, n, spare)
        p, q = _outer_sums(inp, scale, bounds)
        o_pos, o_neg = out.clamp(min=0), out.clamp(max=0).neg_()
        pos, neg = _pair_sum(o_pos, p, o_neg, q), _pair_sum(o_pos, q, o_neg, p)
    else:
        grads = values.reshape(n, units, -1)
        weight = grads.abs() if rule == "magnitude" else grads
        denom = torch.sum(weight, 0, out=scratch[0]) if scratch is not None else weight.sum(0)
        scale, _, even = _ratios(d, denom, n, spare)
        share = weight * scale
        pos, neg = share.clamp(min=0).sum(2), share.clamp(max=0).sum(2).neg_()
    if even is not None:  # the evenly split weights add the same amount to every example of the step
        pos, neg = pos + even[0], neg + even[1]
    return torch.cat([pos, neg], 1)


def _derived_unit_shares(values: torch.Tensor, scale: torch.Tensor, form: ExampleForm, units: int) -> torch.Tensor:
    """Per-unit sums of ``c · g_j`` by sign. For "outer" values ``g_j[o, i] = δ_jo a_ji``, so with ``x = c δ`` the
    sums are ``x⁺ A⁺ + x⁻ A⁻`` (positive) and ``x⁺ A⁻ + x⁻ A⁺`` (negative), ``A^± = Σ_i a^±_ji``: no product with
    the inputs at all."""
    n = len(values)
    if form == "outer":
        x = values[:, :units] * scale.to(values.dtype)
        inp = values[:, units:]
        a_pos, a_neg = inp.clamp(min=0).sum(1, keepdim=True), inp.clamp(max=0).sum(1, keepdim=True).neg_()
        x_pos, x_neg = x.clamp(min=0), x.clamp(max=0).neg_()
        pos, neg = x_pos * a_pos + x_neg * a_neg, x_pos * a_neg + x_neg * a_pos
    else:
        share = values.reshape(n, units, -1) * scale.to(values.dtype)
        pos, neg = share.clamp(min=0).sum(2), share.clamp(max=0).sum(2).neg_()
    return torch.cat([pos, neg], 1)


def _outer_sums(
    inp: torch.Tensor, scale: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``P`` and ``Q`` of the module docstring (None where it is zero), from the inputs and the finite ratios
    ``scale``, whose smallest and largest values are ``bounds``.

    Only the products that can be non-zero are formed: with non-negative inputs (after a ReLU, and always for
    "magnitude") ``a⁻ = 0``, and when every ratio has one sign (plain SGD's "gradient" ratios are all ``-lr``
    up to rounding) ``S⁺`` or ``S⁻`` is zero, so one product of the inputs with the ratios is all the work.
    """
    lo, hi = bounds
    if bool(inp.min() >= 0):
        if bool(hi <= 0):  # S⁺ = 0, S⁻ = -S; a @ (-S)ᵀ is -(a @ Sᵀ) bit for bit, and negating the product is cheaper
            return None, torch.mm(inp, scale.T).neg_()
        if bool(lo >= 0):  # S⁻ = 0
            return inp @ scale.T, None
        s_pos = scale.clamp(min=0)
        pq = inp @ torch.cat([s_pos, s_pos - scale], 0).T  # [P | Q] = a @ [S⁺ᵀ | S⁻ᵀ]
    else:  # [P | Q] = [a⁺ | a⁻] @ [[S⁺ᵀ, S⁻ᵀ], [S⁻ᵀ, S⁺ᵀ]] in one product
        s_pos = scale.clamp(min=0)
        s_neg = s_pos - scale  # max(-scale, 0), in one pass
        a_pos, a_neg = inp.clamp(min=0), inp.clamp(max=0).neg_()
        blocks = torch.cat([torch.cat([s_pos, s_neg], 0), torch.cat([s_neg, s_pos], 0)], 1)
        pq = torch.cat([a_pos, a_neg], 1) @ blocks.T
    units = len(scale)
    return pq[:, :units], pq[:, units:]


def _pair_sum(a: torch.Tensor, x: torch.Tensor | None, b: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """``a ⊙ x + b ⊙ y`` where a None factor is zero (at least one is not None)."""
    if x is None:
        assert y is not None  # for the type checker: _outer_sums never returns two Nones
        return b * y
    return a * x if y is None else a * x + b * y


def _ratios(
    delta: torch.Tensor, denom: torch.Tensor, n: int, spare: torch.Tensor | None
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
    """``Δw / Σ_k w_k`` where finite (else 0), its smallest and largest values, and, per unit, the positive and
    negative parts of ``Δw / n`` summed over the weights where the ratio is not finite (``(2, units)``; None when
    that is zero, the usual case). The ratios are computed in ``spare`` when given (space of ``denom``'s shape),
    and ``denom`` may be overwritten.
    """
    scale = torch.div(delta, denom, out=spare) if spare is not None else delta / denom
    # NaN propagates through aminmax, so finite bounds prove every ratio finite in the pass that finds the signs.
    bounds = torch.aminmax(scale)
    if _finite(bounds):
        return scale, bounds, None
    # Finite operands make NaN only of 0/0: a weight no example had a gradient on and that did not move (plain SGD
    # at an input or a unit no example of the step reached). It has nothing to split: its ratio is 0, as below.
    if bool(torch.isfinite(delta.sum())) and bool(torch.isfinite(denom.sum())):
        bounds = torch.aminmax(scale.nan_to_num_(nan=0.0, posinf=_INF, neginf=-_INF))  # infinities stay
        if _finite(bounds):
            return scale, bounds, None
    # Float arithmetic only: on CPU, elementwise comparisons into a bool mask cost several times more.
    even = torch.mul(scale, 0, out=denom).nan_to_num_(nan=1.0)  # x · 0 is 0 for finite x, else NaN: 1 where not finite
    scale.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    bounds = torch.aminmax(scale)
    lo, hi = torch.aminmax(even.mul_(delta))
    if bool(lo == 0) and bool(hi == 0):  # nothing moved where no example had a gradient (no decay, no momentum)
        return scale, bounds, None
    even.div_(n)
    return scale, bounds, torch.stack([even.clamp(min=0).sum(1), even.clamp(max=0).sum(1).neg_()])


def _finite(bounds: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return bool(torch.isfinite(bounds[0])) and bool(torch.isfinite(bounds[1]))
