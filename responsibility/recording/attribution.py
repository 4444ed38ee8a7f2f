"""Which tracked parameters are recorded per example, and the per-example values their journal keeps.

``attribution="per_example"`` records every tracked parameter per example and refuses, naming them, parameters it
cannot. ``"auto"`` records per example where that applies and is cheap, and every other parameter uniformly (every
example of a step gets the step's Δw), saying which and why in one warning:

- parameters of layers other than nn.Linear and nn.Conv2d, and MultiheadAttention's ``out_proj`` (applied without
  calling the Linear) have no captured per-example gradients;
- at weight granularity, a Conv2d weight or a Linear weight with sequence inputs of more than
  :data:`DENSE_LIMIT` weights would journal its dense per-example gradients, batch × weights values per step
  (``granularity="neuron"`` records it per example at 2 × units values per example; ``attribution="per_example"``
  journals the dense gradients anyway).

Decisions that depend on the model's inputs (a Linear's input dimensions, a layer whose weight is used without
calling it) are made at the first optimizer step, after a backward pass has shown them, before the store is made.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from responsibility.choices import AttributionSetting, ExampleForm, ShareRule
from responsibility.errors import Fix, LayerSelectionError
from responsibility.recording.derived import derived_scale, gradient_sum
from responsibility.recording.per_example import ExampleGradients, uncalled_linears, unsupported_reason
from responsibility.recording.unit_shares import unit_shares
from responsibility.store.spec import ParamSpec

__all__ = ["DENSE_LIMIT", "PerExample"]

# "auto" journals dense per-example gradients of weights up to this size (16 KiB per example): small convolutions
# cost little, a large one would multiply the journal by the batch size.
DENSE_LIMIT = 4096

Owner = tuple[str, nn.Module, str, nn.Parameter]  # name, module, attribute name on it, parameter
_FIXES: list[Fix] = [{"attribution": "auto"}, {"layers": ...}, {"attribution": "uniform"}]


class PerExample:
    """Per-example capture for the parameters of ``owners`` that can have it (``setting`` "auto" or "per_example").

    Raises :class:`LayerSelectionError` naming the parameters ``"per_example"`` cannot record.
    """

    def __init__(self, model: nn.Module, owners: Sequence[Owner], setting: AttributionSetting) -> None:
        self.setting = setting
        uncalled = uncalled_linears(model)
        reasons = {name: unsupported_reason(module, leaf, uncalled) for name, module, leaf, _ in owners}
        self.skipped: dict[str, str] = {name: why for name, why in reasons.items() if why is not None}
        if setting == "per_example" and self.skipped:
            raise LayerSelectionError("attribution='per_example' cannot record " + _listing(self.skipped), fixes=_FIXES)
        self._owners = [o for o in owners if o[0] not in self.skipped]
        self._batch_norms = [
            (name, m) for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        self.capture: ExampleGradients | None = None
        if self._owners:
            # Specs without a form: the capture picks its own until decide() knows the inputs.
            self.capture = ExampleGradients([(ParamSpec(n, tuple(p.shape)), m, leaf) for n, m, leaf, p in self._owners])
            self.capture.attach()
        self._journal: list[tuple[ParamSpec, nn.Parameter]] = []
        self._scratch: dict[str, torch.Tensor] = {}  # per-unit shares' (2, units, inputs) space, reused every step
        self._taken: torch.Tensor | None = None  # the rows take() returned, which the capture's weight_grads cover

    def decide(self, specs: Sequence[ParamSpec], warn: bool, rule: ShareRule, derived: bool = False) -> list[ParamSpec]:
        """Give each spec its journaled per-example form (None: recorded uniformly), from what the backward passes
        so far showed; ``warn`` (one process of several) says which parameters are recorded uniformly and why.
        Under the share ``rule`` "gradient", the capture keeps autograd's weight gradients for the per-unit
        shares, and with a ``derived`` journal for the check of the "outer" weights' steps too."""
        skipped = dict(self.skipped)
        forms: dict[str, ExampleForm] = {}
        capture = self.capture
        for name, _, _, param in self._owners:
            if capture is None:
                break
            spec = next(s for s in specs if s.name == name)
            dims = capture.input_dims(name)
            if dims is None and param.grad is not None:
                skipped[name] = (
                    "its layer was not called with gradient although the parameter got one (is the weight used "
                    "outside the layer's forward?)"
                )
            elif dims is not None and dims > 2 and capture.form(name) == "outer":
                capture.use_dense(name)  # sequence inputs: Σ over positions of the outer products
            if name in skipped:
                continue
            out_units = spec.shape[0] if spec.shape else 1
            dense_weights = capture.form(name) == "dense" and spec.numel > out_units  # a weight, not a bias
            if spec.granularity == "neuron":
                forms[name] = "units"
            elif dense_weights and spec.numel > DENSE_LIMIT and self.setting == "auto":
                skipped[name] = (
                    f"at weight granularity its per-example gradients would be journaled densely, {spec.numel:,} "
                    f"values per example per step (auto does so up to {DENSE_LIMIT:,}); granularity='neuron' "
                    f"records it per example at {2 * out_units} values per example"
                )
            else:
                forms[name] = capture.form(name)
        if self.setting == "per_example" and len(skipped) > len(self.skipped):
            raise LayerSelectionError("attribution='per_example' cannot record " + _listing(skipped), fixes=_FIXES)
        if capture is not None:
            capture.keep_only(set(forms))
            if rule == "gradient":  # the "magnitude" rule divides by Σ_k |g_k|, which autograd does not form
                kept = {"units", "outer"} if derived else {"units"}
                capture.keep_weight_grads({name for name, form in forms.items() if form in kept})
        by_name = {name: param for name, _, _, param in self._owners}
        out = [dataclasses.replace(s, example_form=forms.get(s.name)) for s in specs]
        self._journal = [(s, by_name[s.name]) for s in out if s.example_form is not None]
        if warn:
            self._warn(skipped, [s.name for s in out if s.example_form is None], [s.name for s, _ in self._journal])
        return out

    def _warn(self, skipped: dict[str, str], uniform: list[str], per_example: list[str]) -> None:
        if skipped and per_example:
            warnings.warn(
                f"responsibility: attribution='auto' records {len(per_example)} parameter(s) per example and "
                f"{len(uniform)} uniformly (every example of a step gets the step's whole Δw): " + _listing(skipped),
                UserWarning,
                stacklevel=4,
            )
        elif skipped:
            warnings.warn(
                "responsibility: attribution='auto' found no parameter it can record per example and records all "
                "uniformly: " + _listing(skipped),
                UserWarning,
                stacklevel=4,
            )
        mixing = [name for name, m in self._batch_norms if m.training]
        if per_example and mixing:
            warnings.warn(
                f"responsibility: batch norm layers in training mode ({', '.join(mixing)}) mix the examples of a "
                "batch; per-example attribution assumes examples do not interact, so each example's share is "
                "computed from its own gradient as if they did not (the shares still sum to Δw)",
                UserWarning,
                stacklevel=4,
            )

    def take(self) -> torch.Tensor | None:
        """The captured per-example rows of the step so far (then forgotten)."""
        self._taken = self.capture.take() if self.capture is not None else None
        return self._taken

    def gradient_sums(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Autograd's weight gradients that are ``Σ_k g_k`` of the captured ``rows``, by name: only when they are
        this process's rows of the step (not gathered from other processes, or given by the caller). Call before
        :meth:`journal_values`, which may overwrite them."""
        return dict(self.capture.weight_grads) if self.capture is not None and rows is self._taken else {}

    def journal_values(
        self,
        rows: torch.Tensor,
        weight_change: Callable[[nn.Parameter], torch.Tensor],
        rule: ShareRule,
        derived: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The journal's per-example values from the step's captured ``rows`` (all its examples): neuron
        granularity parameters' shares summed per unit (needs each one's Δw), the others' rows as captured.

        With a ``derived`` journal each per-unit parameter's step is checked first, as the recorder checks the
        others' (:func:`~responsibility.recording.derived.derived_scale`); where it passes, the shares are c · g_j,
        with no product of the inputs and the ratios. Returns the values and those scales by name (inf: the step's
        shares came from its Δw)."""
        capture = self.capture
        scales: dict[str, torch.Tensor] = {}
        if capture is None or all(s.example_form != "units" for s, _ in self._journal):
            return rows, scales
        # Autograd's weight gradient is the "gradient" rule's Σ_k g_k (decide() keeps it only under that rule).
        sums = self.gradient_sums(rows)
        self._taken = None
        out = rows.new_empty(len(rows), sum(s.example_width for s, _ in self._journal))
        col = j = 0
        for spec, param in self._journal:
            width = capture.width(spec.name)
            part = rows[:, col : col + width]
            if spec.example_form == "units":
                scratch = self._scratch.get(spec.name)
                if scratch is None or scratch.device != rows.device:
                    scratch = self._scratch[spec.name] = rows.new_empty(2, spec.units, spec.numel // spec.units)
                delta = weight_change(param)
                form = capture.form(spec.name)
                weight_sums, scale = sums.get(spec.name), None
                if derived:
                    if weight_sums is None:  # formed once: the ratios use it too where the check fails
                        weight_sums = gradient_sum(part, form, spec.shape)
                    c = scales[spec.name] = derived_scale(delta, weight_sums, param, scratch[1])
                    scale = c if bool(torch.isfinite(c)) else None
                part = unit_shares(part, delta, form, spec.shape, rule, scratch, weight_sums, scale)
            out[:, j : j + spec.example_width] = part
            col, j = col + width, j + spec.example_width
        return out, scales

    def detach(self) -> None:
        if self.capture is not None:
            self.capture.detach()


def _listing(reasons: dict[str, str]) -> str:
    return "".join(f"\n  - {name}: {why}" for name, why in reasons.items())
