"""The default explanation: each training example's contribution to the input's target score.

For an input x with target class t, a chosen layer L (a module; its chosen weights θ_L) and a training example m:

    g_L(x) = ∂ score_t(x) / ∂θ_L        the input's own gradient: which weights matter for it, and which way
    p_L(m) = R_pos[m, θ_L] - R_neg[m, θ_L]   m's total signed push on those weights over training
    c_L(x, m) = g_L(x) · p_L(m)         first-order change of score_t(x) that m's updates of θ_L caused

``normalize`` combines the layers:

- ``"none"``: ``Σ_L c_L(x, m)``, the raw first-order change (additive over examples and layers).
- ``"layer"``: every layer gets an equal vote: ``Σ_L c_L(x, ·) / ‖c_L(x, ·)‖`` (L2 norm over the examples).
- ``"cosine"`` (default): first ``c_L(x, m) / ‖p_L(m)‖`` (the cosine of the input's gradient and m's push, up to
  a factor of the input alone), then equal votes as in ``"layer"``. Examples with huge pushes (mislabelled or hard
  ones, which push hard on everything) no longer top every input's list.

``sign``: ``"pos"`` uses only the increases of the weights (``p = R_pos``), ``"neg"`` only the decreases
(``p = -R_neg``), so that ``net = pos + neg`` under ``"none"``; ``"abs"`` weighs ``R_pos + R_neg`` by ``|g|``
(how much of what the input relies on the example moved, in any direction). A neuron-granularity parameter keeps
one R column per unit, the sum over the unit's incoming weights; its coefficient is the mean of ``g`` over those
weights (exact when the example moved them all alike).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from responsibility.choices import QueryNormalize, QuerySign
from responsibility.query.gradients import TargetGradients, sample_gradients
from responsibility.store import ParamSpec, ResponsibilityStore

__all__ = ["Pushes", "contribution_scores"]

# Signed R of the queried parameters held in memory, at most this much in all (larger ones stream per batch).
PUSH_CACHE_BYTES = 1 << 30
_TINY = 1e-30


class Pushes:
    """Each example's signed push ``p`` on the parameters of one store, held column-major ``(columns, N)`` (so an
    input's scores are one row-major product ``g @ p``), in memory within a budget."""

    def __init__(self, store: ResponsibilityStore, budget_bytes: int = PUSH_CACHE_BYTES) -> None:
        self.store = store
        self.budget_bytes = budget_bytes
        self._generation = store.generation
        self._full: dict[tuple[str, str], torch.Tensor] = {}
        self._sq_norms: dict[tuple[str, str], torch.Tensor] = {}

    def _fresh(self) -> None:
        if self.store.generation != self._generation:  # a newer fold or commit: drop what was read
            self._full.clear()
            self._sq_norms.clear()
            self._generation = self.store.generation

    def full(self, name: str, sign: QuerySign) -> torch.Tensor | None:
        """``p`` of every column of ``name`` as one float32 ``(units, N)`` tensor, or None when over budget."""
        self._fresh()
        key = (name, sign)
        if key not in self._full:
            need = self.store.num_examples * self.store.param(name).units * 4
            used = sum(t.numel() * 4 for t in self._full.values())
            if used + need > self.budget_bytes:
                return None
            self._full[key] = torch.cat([block for _, block in self._stream(name, sign)], 0)
        return self._full[key]

    def blocks(self, name: str, sign: QuerySign) -> Iterator[tuple[slice, torch.Tensor]]:
        """``(columns, p[columns])`` (``(len(columns), N)``) of ``name``, from memory or read block by block."""
        full = self.full(name, sign)
        if full is not None:
            yield slice(0, full.shape[0]), full
        else:
            yield from self._stream(name, sign)

    def sq_norms(self, name: str, sign: QuerySign) -> torch.Tensor:
        """``Σ_columns p²`` per example of ``name`` (float64, (N,))."""
        self._fresh()
        key = (name, sign)
        if key not in self._sq_norms:
            total = torch.zeros(self.store.num_examples, dtype=torch.float64)
            for _, block in self.blocks(name, sign):
                total += block.double().square().sum(0)
            self._sq_norms[key] = total
        return self._sq_norms[key]

    def _stream(self, name: str, sign: QuerySign) -> Iterator[tuple[slice, torch.Tensor]]:
        for cols, pos, neg in self.store.iter_parts(name):
            if sign == "net":
                block = pos - neg
            elif sign == "pos":
                block = pos
            elif sign == "neg":
                block = -neg
            else:
                block = pos + neg
            yield cols, block.T.contiguous()


def contribution_scores(
    grads: TargetGradients,
    layers: Sequence[tuple[nn.Module, list[tuple[ParamSpec, str]]]],
    pushes: Pushes,
    sign: QuerySign,
    normalize: QueryNormalize,
) -> torch.Tensor:
    """``(B, N)`` float32 scores of every training example for every input of one batch (module docstring)."""
    total: torch.Tensor | None = None
    for module, params in layers:
        calls = grads.calls.get(module)
        if not calls:
            continue
        s = _param_scores(params[0][0], module, params[0][1], calls, pushes, sign)
        for spec, leaf in params[1:]:
            s += _param_scores(spec, module, leaf, calls, pushes, sign)
        if normalize == "cosine":
            norms = torch.stack([pushes.sq_norms(spec.name, sign) for spec, _ in params]).sum(0).sqrt()
            s *= torch.where(norms > _TINY, 1.0 / norms.clamp_min(_TINY), 0.0).float()
        if normalize != "none":
            s /= torch.linalg.vector_norm(s, dim=1, keepdim=True).clamp_min(_TINY)
        if total is None:
            total = s
        else:
            total += s
    return total if total is not None else torch.zeros(len(grads.scores), pushes.store.num_examples)


def _param_scores(
    spec: ParamSpec,
    module: nn.Module,
    leaf: str,
    calls: list[tuple[torch.Tensor, torch.Tensor]],
    pushes: Pushes,
    sign: QuerySign,
) -> torch.Tensor:
    """``g(x) · p(m)`` of one parameter for a batch: ``(B, N)``."""
    full = pushes.full(spec.name, sign)
    x, delta = calls[0]
    if (
        full is not None
        and len(calls) == 1
        and isinstance(module, nn.Linear)
        and leaf == "weight"
        and spec.granularity == "weight"
        and x.dim() == 2
        and delta.dim() == 2
    ):
        return _outer_scores(delta.float(), x.float(), full, sign == "abs")
    g = sum(sample_gradients(module, leaf, x, d, spec.granularity) for x, d in calls)
    if not isinstance(g, torch.Tensor):  # no call
        return torch.zeros(len(x), pushes.store.num_examples)
    g = g.reshape(len(g), -1)
    if sign == "abs":
        g = g.abs()
    if full is not None:
        return g @ full
    out = torch.zeros(len(g), pushes.store.num_examples)
    for cols, block in pushes.blocks(spec.name, sign):
        out.addmm_(g[:, cols], block)
    return out


def _outer_scores(delta: torch.Tensor, x: torch.Tensor, full: torch.Tensor, magnitude: bool) -> torch.Tensor:
    """``Σ_{o,i} δ[b,o] x[b,i] p[o,i,m]`` row by row of the Linear weight, only where δ is non-zero.

    For the final layer under a target, δ is one-hot: each input reads one row of ``p`` instead of all of them.
    """
    if magnitude:
        delta, x = delta.abs(), x.abs()
    per_row = full.view(delta.shape[1], x.shape[1], full.shape[1])
    out = torch.zeros(len(x), full.shape[1])
    one_hot = bool(((delta != 0).sum(1) <= 1).all())  # each input reads at most one row: plain copies, no adds
    for o in torch.nonzero(delta.any(0)).flatten().tolist():
        rows = torch.nonzero(delta[:, o]).flatten()
        part = (x[rows] @ per_row[o]).mul_(delta[rows, o, None])
        if one_hot:
            out[rows] = part
        else:
            out.index_add_(0, rows, part)
    return out
