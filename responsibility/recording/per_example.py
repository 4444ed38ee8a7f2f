"""Per-example attribution: split each step's Δw among the step's examples by their own gradients.

Example j of a step gets ``share_j`` of the step's weight change, and the shares of a step sum to Δw exactly:

- rule ``"gradient"``: ``share_j = Δw ⊙ g_j / Σ_k g_k``. With plain SGD (no momentum, no weight decay) the step
  is ``Δw = -lr Σ_k g_k``, so ``share_j = -lr g_j``: each example's own update, exactly.
- rule ``"magnitude"``: ``share_j = Δw ⊙ |g_j| / Σ_k |g_k|``: every example moves the weight in Δw's direction,
  in proportion to the size of its gradient on it. For momentum, Adam or weight decay, where Δw is not a multiple
  of the current gradient, this stays well conditioned; ``Δw / Σ_k g_k`` can explode where the examples' gradients
  cancel.

Where the denominator is zero (no example of the step has a gradient on the weight: momentum or weight decay alone
moved it), the weight's Δw is split evenly among the step's examples. ``g_j`` is example j's gradient of the
loss the optimizer stepped on; rules only use ratios, so loss scaling (means, accumulation) does not matter.

Recording (:class:`ExampleGradients`): module hooks capture per-example gradients of tracked ``nn.Linear`` and
``nn.Conv2d`` parameters, batched, in the backward pass that computes the batch gradient. A Linear weight's
per-example gradient with (batch, features) inputs is the outer product ``δ_j a_jᵀ`` of the output gradient and
the layer input: the journal keeps the two factors (``out + in`` values per example instead of ``out · in``), and
the product is formed only when folding (:func:`responsibility.kernels.shares.example_grads`). With sequence inputs
(batch, ..., features) it is ``Σ_t δ_jt a_jtᵀ``, captured densely like Conv2d weights and all biases. At neuron
granularity each example's share is summed per unit in the step (:mod:`responsibility.recording.unit_shares`), and
the journal keeps those sums. Per-example gradients assume examples do not interact in the forward pass (no batch
norm in training mode).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from responsibility.choices import ExampleForm, ShareRule
from responsibility.errors import LayerSelectionError, ResponsibilityError
from responsibility.store.spec import ParamSpec

__all__ = ["ExampleGradients", "default_rule", "example_form", "unsupported_reason", "uncalled_linears"]


def uncalled_linears(model: nn.Module) -> set[int]:
    """Ids of the Linear modules whose weights their parent applies itself, without calling the Linear: the
    ``out_proj`` of every ``nn.MultiheadAttention`` (its forward hooks never fire)."""
    return {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}


def unsupported_reason(module: nn.Module, leaf: str, uncalled: Collection[int] = ()) -> str | None:
    """Why parameter ``leaf`` of ``module`` cannot be recorded per example, or None if it can."""
    if id(module) in uncalled:
        return "nn.MultiheadAttention applies its out_proj weights itself, so the Linear's hooks never run"
    if isinstance(module, (nn.Linear, nn.Conv2d)) and leaf in ("weight", "bias"):
        return None
    return (
        f"it belongs to a {type(module).__name__}; per-example gradients are captured for the weights and biases "
        "of nn.Linear and nn.Conv2d layers only"
    )


def example_form(module: nn.Module, leaf: str, name: str) -> ExampleForm:
    """How the per-example gradients of parameter ``leaf`` of ``module`` are captured: "outer" (a Linear weight's
    two factors) or "dense" (the gradient itself)."""
    reason = unsupported_reason(module, leaf)
    if reason is not None:
        raise LayerSelectionError(
            f"per-example attribution cannot record {name!r}: {reason}.",
            fixes=[{"attribution": "auto"}, {"layers": ...}, {"attribution": "uniform"}],
        )
    return "outer" if isinstance(module, nn.Linear) and leaf == "weight" else "dense"


class ExampleGradients:
    """Captures per-example gradients of tracked Linear/Conv2d parameters with module hooks.

    A forward hook keeps each tracked layer's input and puts a hook on its output; that hook receives the output
    gradient in the backward pass. Forward passes without gradient (validation, ``no_grad``) are ignored.
    :meth:`take` returns the rows of all backward passes since the last call (several with gradient accumulation),
    in batch order, laid out by each parameter's capture form: ``"outer"`` (δ then a, for a Linear weight with
    (batch, features) inputs), else ``"dense"`` (the gradient; summed over the positions of a Linear's sequence
    inputs, (batch, ..., features)). A Linear weight captures "outer" unless its spec journals it "dense"
    or :meth:`use_dense` switched it.
    """

    def __init__(self, tracked: Sequence[tuple[ParamSpec, nn.Module, str]]) -> None:
        self._modules: dict[int, tuple[nn.Module, list[tuple[ParamSpec, str]]]] = {}
        self._order: list[tuple[ParamSpec, int]] = []
        self._forms: dict[str, ExampleForm] = {}
        for spec, module, leaf in tracked:
            form = example_form(module, leaf, spec.name)
            self._forms[spec.name] = "dense" if spec.example_form == "dense" else form
            self._modules.setdefault(id(module), (module, []))[1].append((spec, leaf))
            self._order.append((spec, id(module)))
        self._captured: dict[int, list[dict[str, tuple[torch.Tensor, ...]] | None]] = {k: [] for k in self._modules}
        self._input_dims: dict[str, int] = {}
        self._handles: list[Any] = []
        self._grad_wanted: set[str] = set()
        self._grad_sums: dict[str, torch.Tensor] = {}
        self._grad_calls: dict[str, int] = {}  # calls whose weight gradient is in the sum: it must be all of them
        #: After :meth:`take`: the weight gradients kept (:meth:`keep_weight_grads`) that cover exactly the rows it
        #: returned, by name; valid until the next backward pass, and free to overwrite.
        self.weight_grads: dict[str, torch.Tensor] = {}

    def attach(self) -> None:
        """Register the hooks (idempotent)."""
        if not self._handles:
            self._handles = [m.register_forward_hook(self._forward) for m, _ in self._modules.values()]

    def detach(self) -> None:
        """Remove the hooks and drop anything captured."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.clear()

    def clear(self) -> None:
        for calls in self._captured.values():
            calls.clear()
        self._grad_calls.clear()

    def keep_weight_grads(self, names: set[str]) -> None:
        """Keep the batch gradient of these "outer" Linear weights as autograd computes it in the backward pass
        (each layer call's own, before accumulation, clipping or reduction across processes), for
        :attr:`weight_grads`."""
        self._grad_wanted = {n for n in names if self._forms.get(n) == "outer"}

    # ------------------------------------------------------------------ what was seen
    def input_dims(self, name: str) -> int | None:
        """The largest number of input dimensions parameter ``name``'s layer has seen with gradient (None: not run)."""
        return self._input_dims.get(name)

    def form(self, name: str) -> ExampleForm:
        return self._forms[name]

    def use_dense(self, name: str) -> None:
        """Capture a Linear weight's gradient densely (summed over positions) instead of as two factors."""
        self._forms[name] = "dense"

    def keep_only(self, names: set[str]) -> None:
        """Stop capturing every parameter not in ``names`` (layers left with none lose their hooks); what was
        captured for the others stays."""
        attached = bool(self._handles)
        for h in self._handles:
            h.remove()
        self._handles = []
        self._order = [(spec, key) for spec, key in self._order if spec.name in names]
        for key in list(self._modules):
            params = self._modules[key][1]
            params[:] = [(spec, leaf) for spec, leaf in params if spec.name in names]
            if not params:
                del self._modules[key], self._captured[key]
        if attached:
            self.attach()

    def width(self, name: str) -> int:
        """Values per example of parameter ``name`` in the rows of :meth:`take`."""
        spec = next(spec for spec, _ in self._order if spec.name == name)
        return spec.shape[0] + spec.shape[1] if self._forms[name] == "outer" else spec.numel

    # ------------------------------------------------------------------ hooks
    def _forward(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        calls = self._captured.get(id(module))
        # A deep copy of the model (EMA, a teacher) carries a copy of this hook: it is not a tracked layer.
        if calls is None or not (torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad):
            return
        x = args[0]
        for spec, _ in self._modules[id(module)][1]:
            self._input_dims[spec.name] = max(x.dim(), self._input_dims.get(spec.name, 0))
        calls.append(None)
        output.register_hook(partial(self._backward, module, x.detach(), calls, len(calls) - 1))
        if self._grad_wanted and x.dim() == 2:
            node = output.grad_fn
            for spec, leaf in self._modules[id(module)][1]:
                if spec.name in self._grad_wanted:  # "outer" weights only (keep_weight_grads)
                    edge = _weight_edge(node, getattr(module, leaf))
                    if node is not None and edge is not None:
                        node.register_hook(partial(self._weight_grad, spec.name, edge))

    def _backward(
        self,
        module: nn.Module,
        x: torch.Tensor,
        calls: list[dict[str, tuple[torch.Tensor, ...]] | None],
        slot: int,
        grad: Any,
    ) -> None:
        delta = grad.detach().float()
        x = x.float()
        values: dict[str, tuple[torch.Tensor, ...]] = {}
        for spec, leaf in self._modules[id(module)][1]:
            if isinstance(module, nn.Linear) and leaf == "weight":
                # Kept as they are; take() lays them out (factors side by side, or summed over positions).
                values[spec.name] = (delta, x)
            elif isinstance(module, nn.Linear):  # the bias: δ, summed over the positions of sequence inputs
                values[spec.name] = (delta.reshape(len(delta), -1, delta.shape[-1]).sum(1),)
            elif leaf == "bias":
                values[spec.name] = (delta.sum((2, 3)),)
            elif isinstance(module, nn.Conv2d):
                values[spec.name] = (_conv2d_weight_grads(module, x, delta),)
        calls[slot] = values

    def _weight_grad(self, name: str, edge: int, grad_inputs: tuple[Any, ...], _: Any) -> None:
        """Post-hook of a tracked Linear call's product node: add the call's weight gradient to the step's sum."""
        grad = grad_inputs[edge]
        if grad is None or grad.dtype != torch.float32:
            return  # not counted: the step falls back to forming the sum from the captured rows
        calls = self._grad_calls.get(name, 0)
        total = self._grad_sums.get(name)
        weight_grad = grad.t()  # the node's input is the weight's transpose
        if calls == 0:
            if total is None or total.shape != weight_grad.shape or total.device != weight_grad.device:
                total = self._grad_sums[name] = torch.empty_like(weight_grad, memory_format=torch.contiguous_format)
            total.copy_(weight_grad)
        else:
            total += weight_grad
        self._grad_calls[name] = calls + 1

    # ------------------------------------------------------------------ rows
    def take(self) -> torch.Tensor:
        """``(B, width)`` float32 rows of the examples seen since the last call, then forget them."""
        per_module: dict[int, list[dict[str, tuple[torch.Tensor, ...]]]] = {}
        batch: int | None = None
        device: torch.device | None = None
        first: list[str] = []
        for key, calls in self._captured.items():
            done = [c for c in calls if c is not None]
            if not done:
                continue
            n = sum(_rows(c) for c in done)
            names = [spec.name for spec, _ in self._modules[key][1]]
            if batch is not None and n != batch:
                raise ResponsibilityError(
                    f"per-example attribution: the layer of {', '.join(names)} saw {n} examples in this step, the "
                    f"layer of {', '.join(first)} {batch}. Each tracked layer must run exactly once per example, "
                    "with the batch in its input's first dimension (batch_first=True for sequence models)",
                    fixes=[{"layers": ...}, {"attribution": "uniform"}],
                )
            batch, device, first = n, next(iter(done[0].values()))[0].device, names
            per_module[key] = done
        self.weight_grads = {
            spec.name: self._grad_sums[spec.name]
            for spec, key in self._order
            if key in per_module and self._grad_calls.get(spec.name) == len(per_module[key])
        }
        self.clear()
        widths = [self.width(spec.name) for spec, _ in self._order]
        out = torch.empty(batch or 0, sum(widths), dtype=torch.float32, device=device)
        col = 0
        for (spec, key), width in zip(self._order, widths, strict=True):
            module_calls = per_module.get(key)
            if module_calls is None:  # the layer did not run with gradient: its examples pushed it nowhere
                out[:, col : col + width].zero_()
            row = 0
            for call in module_calls or ():
                factors = call[spec.name]
                n = len(factors[0])
                self._put(spec, factors, out[row : row + n, col : col + width])
                row += n
            col += width
        return out

    def _put(self, spec: ParamSpec, factors: tuple[torch.Tensor, ...], rows: torch.Tensor) -> None:
        """Write one call's values of ``spec`` into its (examples, width) ``rows``."""
        if len(factors) == 1:  # a bias or a Conv2d weight: the per-example gradient itself
            rows.copy_(factors[0].reshape(len(factors[0]), -1))
            return
        delta, x = factors
        if self._forms[spec.name] == "outer":
            if x.dim() != 2:
                raise ResponsibilityError(
                    f"per-example attribution of {spec.name!r}: its Linear got inputs of shape {tuple(x.shape)} "
                    "after the store was set up for (batch, features) inputs; record it uniformly or start a new store"
                )
            # The two factors side by side, copied straight into place (no concatenated temporary).
            units = delta.shape[1]
            rows[:, :units].copy_(delta)
            rows[:, units:].copy_(x)
            return
        # Σ over positions of δ_t a_tᵀ, one matmul per example batch: (B, out, T) @ (B, T, in).
        d = delta.reshape(len(delta), -1, delta.shape[-1])
        a = x.reshape(len(x), -1, x.shape[-1])
        rows.copy_(torch.bmm(d.transpose(1, 2), a).reshape(len(delta), -1))


def _weight_edge(node: Any, weight: torch.Tensor) -> int | None:
    """Which input of a Linear call's product node (``addmm``/``mm`` of the input and the weight's transpose) is
    the weight, or None when the node is anything else (autocast's cast, a compiled or wrapped forward)."""
    if type(node).__name__ not in ("AddmmBackward0", "MmBackward0"):
        return None
    for edge, (fn, _) in enumerate(node.next_functions):
        if type(fn).__name__ == "TBackward0":
            (leaf, _), *_ = fn.next_functions
            if getattr(leaf, "variable", None) is weight:
                return edge
    return None


def _rows(call: dict[str, tuple[torch.Tensor, ...]]) -> int:
    """Number of examples of one captured backward pass."""
    return len(next(iter(call.values()))[0])


def _conv2d_weight_grads(conv: nn.Conv2d, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Per-example weight gradients of a Conv2d: ``(B, out, in/groups, kh, kw)`` from the layer input and output
    gradient, as one batched matmul over input patches."""
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    # _reversed_padding_repeated_twice is how Conv2d itself pads for non-zero modes and "same"; covers all cases.
    x = F.pad(x, conv._reversed_padding_repeated_twice, mode=mode).contiguous()
    b, c, g = x.shape[0], x.shape[1], conv.groups
    (kh, kw), (dh, dw), (sh, sw) = conv.kernel_size, conv.dilation, conv.stride
    ho, wo = delta.shape[2], delta.shape[3]
    # Patches as a strided view of the padded input (F.unfold's im2col is an order of magnitude slower on CPU).
    st = x.stride()
    patches = x.as_strided((b, c, kh, kw, ho, wo), (st[0], st[1], dh * st[2], dw * st[3], sh * st[2], sw * st[3]))
    cols = patches.reshape(b, g, (c // g) * kh * kw, ho * wo)
    d = delta.reshape(b, g, -1, ho * wo)
    return torch.matmul(d, cols.transpose(-1, -2)).reshape(b, *conv.weight.shape)


def default_rule(optimizers: Sequence[torch.optim.Optimizer], params: Sequence[torch.Tensor]) -> ShareRule:
    """ "gradient" when every optimizer group holding a tracked parameter is plain SGD (then it is exact), else
    "magnitude"."""
    tracked = {id(p) for p in params}
    for opt in optimizers:
        for group in opt.param_groups:
            if not any(id(p) in tracked for p in group["params"]):
                continue
            plain = type(opt) is torch.optim.SGD and not group.get("momentum") and not group.get("weight_decay")
            if not plain:
                return "magnitude"
    return "gradient"
