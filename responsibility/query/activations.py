"""Per-weight activations of a test input: how large each weight's term is in its unit's pre-activation.

For a weight ``w`` multiplying input value ``x`` the term is ``w·x``; its activation is ``|w·x| = |w|·|x|``.

- ``nn.Linear``: ``A[b, o, i] = |W[o, i]| · |x[b, i]|``. Extra leading dims (sequence positions, as in
  attention projections) are positions, aggregated like those of a convolution.
- ``nn.Conv1d``/``nn.Conv2d``: a weight multiplies one input value per output position. Rule ``"sum"`` adds
  the terms over positions, ``Σ_pos |W[o,c,k]·x[c, pos+k]| = |W[o,c,k]| · Σ_pos |x[c, pos+k]|``, i.e. |W| times
  the sum of |x| over the strided window of each kernel offset; rule ``"max"`` takes the largest term,
  ``|W| · max_pos |x[c, pos+k]|``.
  Padding (any mode), stride, dilation and groups are honoured.
- bias ``b[o]``: its term in each pre-activation of unit ``o`` is ``|b[o]|``, and that is its activation under
  both rules. It is deliberately not multiplied by the number of positions: a bias term does not depend on the
  input, and scaling it would let convolution biases outrank every input-driven weight.
- neuron granularity (one R column per output unit): the unit's activation is the sum of its incoming weights'
  activations, ``Σ_i A[b, o, i]`` (computed as a matrix product, never materialising ``A``).

Other layers (norms, embeddings, custom modules) have no rule: their parameters are reported as unsupported, and so
are those of a supported module that the forward pass never calls (``nn.MultiheadAttention`` applies its
``out_proj`` weights functionally). All inputs go through ONE forward pass with forward hooks; nothing loops over
examples in Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from responsibility.choices import ActivationRule, check_choice
from responsibility.errors import LayerSelectionError
from responsibility.query.forward import call_model
from responsibility.query.options import ForwardFn

__all__ = ["Activations", "activation_modules", "compute_activations"]

_SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass
class Activations:
    """Result of :func:`compute_activations`.

    ``values[name]`` is ``(B, *r_shape)``: the weight's shape (weight granularity) or ``(units,)`` (neuron).
    """

    output: Any
    values: dict[str, torch.Tensor]
    unsupported: list[str] = field(default_factory=list)


def activation_modules(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Parameter name -> (owning module, ``"weight"`` or ``"bias"``) for every parameter that has a rule."""
    out: dict[str, tuple[nn.Module, str]] = {}
    for mod_name, mod in model.named_modules():
        if not isinstance(mod, _SUPPORTED):
            continue
        prefix = f"{mod_name}." if mod_name else ""
        for kind in ("weight", "bias"):
            if getattr(mod, kind, None) is not None:
                out[prefix + kind] = (mod, kind)
    return out


def _window_stats(mod: nn.Module, x: torch.Tensor, rule: str) -> torch.Tensor:
    """Σ or max over output positions of |input| under each kernel offset: ``(B, in, *kernel)``.

    For a Linear the "kernel" is empty: ``(B, in_features)``.
    """
    ax = x.detach().abs()
    if isinstance(mod, nn.Linear):
        flat = ax.reshape(ax.shape[0], -1, ax.shape[-1]) if ax.dim() > 1 else ax.reshape(1, 1, -1)
        if flat.shape[1] == 1:
            return flat[:, 0]
        return flat.sum(1) if rule == "sum" else flat.amax(1)
    if not isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        raise TypeError(f"no activation rule for {type(mod).__name__}")
    conv1d = isinstance(mod, nn.Conv1d)
    if ax.dim() == (2 if conv1d else 3):  # unbatched input
        ax = ax.unsqueeze(0)
    mode = "constant" if mod.padding_mode == "zeros" else mod.padding_mode
    ax = F.pad(ax, list(mod._reversed_padding_repeated_twice), mode=mode)
    kernel: tuple[int, ...] = tuple(mod.kernel_size)
    dilation: tuple[int, ...] = tuple(int(d) for d in mod.dilation)
    stride: tuple[int, ...] = tuple(int(s) for s in mod.stride)
    if conv1d:
        ax = ax.unsqueeze(2)
        kernel, dilation, stride = (1, *kernel), (1, *dilation), (1, *stride)
    out_h = (ax.shape[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (ax.shape[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    stat = ax.new_empty(ax.shape[0], ax.shape[1], kernel[0], kernel[1])
    # One strided window per kernel offset (a loop over offsets, not examples): reads |x| without the copy
    # that unfold would write.
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r0, c0 = i * dilation[0], j * dilation[1]
            window = ax[
                :,
                :,
                r0 : r0 + (out_h - 1) * stride[0] + 1 : stride[0],
                c0 : c0 + (out_w - 1) * stride[1] + 1 : stride[1],
            ]
            stat[:, :, i, j] = window.sum((2, 3)) if rule == "sum" else window.amax((2, 3))
    return stat.reshape(ax.shape[0], ax.shape[1], *mod.kernel_size)


def _merge(old: torch.Tensor | None, new: torch.Tensor, rule: str) -> torch.Tensor:
    # A module called several times per forward (weight sharing) contributes all its calls' terms.
    if old is None:
        return new
    return old + new if rule == "sum" else torch.maximum(old, new)


def _weight_activation(mod: nn.Module, stat: torch.Tensor, granularity: str, abs_w: torch.Tensor) -> torch.Tensor:
    """Activation of every weight (``(B, *W.shape)``) or unit (``(B, out)``) from the window statistics."""
    groups = getattr(mod, "groups", 1)
    out_ch = abs_w.shape[0]
    b = stat.shape[0]
    if groups > 1:
        # Output channel o reads only the input channels of its group.
        per_group = stat.reshape(b, groups, -1, *stat.shape[2:])
        group_of = torch.arange(out_ch, device=stat.device) // (out_ch // groups)
        stat_o = per_group[:, group_of]  # (B, out, in/groups, *kernel)
        if granularity == "neuron":
            return (stat_o * abs_w).flatten(2).sum(-1)
        return stat_o * abs_w
    if granularity == "neuron":
        return stat.reshape(b, -1) @ abs_w.reshape(out_ch, -1).T
    return stat.unsqueeze(1) * abs_w


def compute_activations(
    model: nn.Module,
    inputs: torch.Tensor,
    names: Iterable[str] | None = None,
    *,
    granularity: Mapping[str, str] | None = None,
    rule: str = "sum",
    abs_weights: Mapping[str, torch.Tensor] | None = None,
    forward: ForwardFn | None = None,
) -> Activations:
    """Activations of the parameters ``names`` (default: all with a rule) for a batch, in one forward pass.

    ``granularity`` maps names to ``"weight"`` (default) or ``"neuron"``. ``abs_weights`` may hold precomputed
    ``|W|`` tensors (a cache for repeated queries). The model runs under ``torch.no_grad`` in its current mode, as
    ``forward(model, inputs)`` (default ``model(inputs)``); ``output`` is what it returns.
    """
    check_choice("rule", rule, ActivationRule)
    granularity = granularity or {}
    rules = activation_modules(model)
    all_params = dict(model.named_parameters())
    wanted = list(rules) if names is None else list(names)
    unsupported = [n for n in wanted if n not in rules]
    unknown = [n for n in unsupported if n not in all_params]
    if unknown:
        raise LayerSelectionError(f"parameter(s) {unknown} are not in the model; its parameters are {list(all_params)}")
    chosen = [n for n in wanted if n in rules]
    modules: dict[int, nn.Module] = {id(rules[n][0]): rules[n][0] for n in chosen}
    stats: dict[int, torch.Tensor | None] = dict.fromkeys(modules)

    def hook(mod: nn.Module, args: tuple, _output: object) -> None:
        stats[id(mod)] = _merge(stats[id(mod)], _window_stats(mod, args[0], rule), rule)

    handles = [m.register_forward_hook(hook) for m in modules.values()]
    try:
        with torch.no_grad():
            output = call_model(model, inputs, forward)
    finally:
        for h in handles:
            h.remove()

    values: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name in chosen:
            mod, kind = rules[name]
            stat = stats[id(mod)]
            if stat is None:  # applied functionally, or not on this input's path
                unsupported.append(name)
                continue
            gran = granularity.get(name, "weight")
            abs_w = abs_weights[name] if abs_weights is not None and name in abs_weights else all_params[name].abs()
            abs_w = abs_w.detach().to(stat.dtype)
            if kind == "bias":
                values[name] = abs_w.unsqueeze(0).expand(stat.shape[0], -1)
            else:
                values[name] = _weight_activation(mod, stat, gran, abs_w)
    return Activations(output=output, values=values, unsupported=unsupported)
