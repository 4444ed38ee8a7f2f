"""Each input's gradient of its target score with respect to the weights of the chosen layers, per input.

One forward pass with hooks keeps every chosen module's input and registers a hook on its output; one backward pass
from ``Σ_b score[b, target_b]`` gives each module's output gradient δ per input (inputs do not interact in eval
mode, so row b of δ belongs to input b alone). The per-input weight gradient is then formed from (input, δ) as the
recording side forms per-example gradients: the outer product ``δ_b x_bᵀ`` for a Linear (summed over positions when
the input has extra dims), patches for a Conv2d, δ summed over positions for a bias.

Module outputs pass through ``output + anchor`` (a zero scalar that requires grad): the backward pass then runs
even when the model's parameters are frozen, without writing any ``.grad``, and the hook sees the gradient of the
output as the module returned it, even if a later in-place op (``ReLU(inplace=True)``) rewrites that tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from responsibility.query.forward import call_model, scores_of, target_rows
from responsibility.query.options import QueryOptions
from responsibility.recording.per_example import _conv2d_weight_grads

__all__ = ["SUPPORTED", "TargetGradients", "sample_gradients", "target_gradients"]

SUPPORTED = (nn.Linear, nn.Conv2d)


@dataclass
class TargetGradients:
    """What one batch's forward and backward pass left: scores, targets, and each called module's (input, δ)."""

    scores: torch.Tensor
    rows: torch.Tensor
    calls: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)


def target_gradients(
    model: nn.Module, batch: torch.Tensor, modules: list[nn.Module], opts: QueryOptions, targets: Any
) -> TargetGradients:
    """Forward ``batch``, then backward from each input's target score: (input, δ) of every call of ``modules``."""
    anchor = torch.zeros((), requires_grad=True)
    seen: dict[nn.Module, list[tuple[torch.Tensor, list[torch.Tensor]]]] = {m: [] for m in modules}

    def keep(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            return None
        out = output + anchor.to(output.dtype)
        slot: list[torch.Tensor] = []
        seen[module].append((args[0].detach(), slot))
        out.register_hook(lambda grad: slot.append(grad.detach()))
        return out

    handles = [m.register_forward_hook(keep) for m in modules]
    try:
        with torch.enable_grad():
            scores = scores_of(call_model(model, batch, opts.forward), len(batch), opts.output)
            rows = target_rows(scores, targets)
            if rows is None:
                raise ValueError("a contribution needs a target class per input")
            chosen = scores.gather(1, rows.to(scores.device).unsqueeze(1)).sum()
            if chosen.requires_grad:
                torch.autograd.grad(chosen, [anchor], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    result = TargetGradients(scores.detach(), rows)
    for module, calls in seen.items():
        # A call whose output did not reach the target score gets no gradient: its δ is zero.
        done = [(x, slot[0] if slot else torch.zeros(())) for x, slot in calls]
        if done:
            result.calls[module] = done
    return result


def sample_gradients(
    module: nn.Module, leaf: str, x: torch.Tensor, delta: torch.Tensor, granularity: str = "weight"
) -> torch.Tensor:
    """Per-input gradient of one parameter of ``module``, ``(B, *parameter.shape)``; at neuron granularity the mean
    over each unit's incoming weights, ``(B, units)``."""
    b = x.shape[0]
    param = getattr(module, leaf)
    if delta.dim() == 0:  # the call did not reach the target
        return torch.zeros(b, *(param.shape[:1] if granularity == "neuron" else param.shape))
    delta, x = delta.float(), x.float()
    if isinstance(module, nn.Conv2d):
        if leaf == "bias":
            return delta.sum((2, 3))
        g = _conv2d_weight_grads(module, x, delta)
        return g.flatten(2).mean(2) if granularity == "neuron" else g
    d = delta.reshape(b, -1, delta.shape[-1])  # Linear: extra dims are positions
    if leaf == "bias":
        return d.sum(1)
    xs = x.reshape(b, -1, x.shape[-1])
    if granularity == "neuron":  # mean_i δ_o x_i = δ_o · mean(x), without forming the outer product
        return torch.bmm(xs.mean(2).unsqueeze(1), d).squeeze(1)
    return torch.bmm(d.transpose(1, 2), xs)
