"""Explain test inputs: which training examples are most responsible for a model's behaviour on them.

Following Khadivpour & Guzdial, a test input is explained through the weight(s) it activates most (see
:mod:`responsibility.query.activations` for activations, :mod:`responsibility.query.choice` for the choice); the
training examples with the largest responsibility R for those weights are the explanation
(:mod:`responsibility.query.scoring`). The options are one :class:`~responsibility.query.options.ExplainOptions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import torch
from torch import nn

from responsibility.errors import LayerSelectionError, StoreMismatchError
from responsibility.query.activations import activation_modules, compute_activations
from responsibility.query.choice import Chosen, choose, eligible, target_rows
from responsibility.query.options import ExplainOptions
from responsibility.query.results import Explanation, InputExplanation
from responsibility.query.scoring import Scorer
from responsibility.recording.selection import matches
from responsibility.store import ResponsibilityStore

__all__ = ["Explainer", "explain"]


class Explainer:
    """Answers repeated queries against one model and store, caching |W| and the top-k index in memory.

    The model must be the module the callback saw (names as in the store), e.g. the LightningModule.
    """

    def __init__(self, model: nn.Module, store: ResponsibilityStore) -> None:
        self.model = model
        self.store = store
        self._check_model()
        self._rules = activation_modules(model)
        self._abs_w: dict[str, tuple[int, torch.Tensor]] = {}
        self._scorer = Scorer(store)
        self._labels: tuple[np.ndarray | None] | None = None

    def _check_model(self) -> None:
        params = dict(self.model.named_parameters())
        problems = []
        for p in self.store.spec.params:
            if p.name not in params:
                problems.append(f"{p.name} is missing")
            elif tuple(params[p.name].shape) != p.shape:
                problems.append(f"{p.name} has shape {tuple(params[p.name].shape)}, store {p.shape}")
        if problems:
            raise StoreMismatchError(
                f"the model does not match the store {self.store.path} (was it recorded from another model?): "
                + "; ".join(problems[:5])
                + ("; ..." if len(problems) > 5 else "")
            )

    def resolve_layers(self, layers: str | Sequence[str] | None) -> tuple[list[str], list[str]]:
        """(selected parameters with an activation rule, selected ones without) in store order."""
        names = self.store.parameters
        if layers is None:
            chosen = names
        else:
            patterns = [layers] if isinstance(layers, str) else list(layers)
            if not patterns:
                raise LayerSelectionError("layers=[] selects nothing; pass None for all parameters")
            unknown = [pat for pat in patterns if not any(matches(n, pat) or fnmatchcase(n, pat) for n in names)]
            if unknown:
                raise LayerSelectionError(f"layer pattern(s) {unknown} match no parameter of the store; it has {names}")
            chosen = [n for n in names if any(matches(n, pat) for pat in patterns)]
        supported = [n for n in chosen if n in self._rules]
        unsupported = [n for n in chosen if n not in self._rules]
        if not supported:
            raise LayerSelectionError(
                f"no selected parameter has an activation rule (Linear, Conv1d, Conv2d); selected: {chosen}"
            )
        return supported, unsupported

    def _abs_weights(self, names: list[str]) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        out = {}
        for n in names:
            p = params[n]
            cached = self._abs_w.get(n)
            # An in-place update (training, load_state_dict) bumps the version counter and invalidates |W|.
            if cached is None or cached[0] != p._version:
                cached = (p._version, p.detach().abs())
                self._abs_w[n] = cached
            out[n] = cached[1]
        return out

    def _store_labels(self) -> np.ndarray | None:
        if self._labels is None:
            self._labels = (self.store.labels,)  # labels are fixed when a store is created: read them once
        return self._labels[0]

    def explain(
        self, inputs: torch.Tensor | np.ndarray, options: ExplainOptions | None = None, /, **changes: Any
    ) -> Explanation:
        """Explain a batch of inputs; see :func:`explain`."""
        opts = (options or ExplainOptions()).with_changes(changes)
        store = self.store
        if opts.k > store.num_examples:
            raise ValueError(f"k must be in [1, {store.num_examples}], got {opts.k}")
        x = torch.as_tensor(inputs)
        if not x.is_floating_point():
            x = x.float()
        names, unsupported = self.resolve_layers(opts.layers)

        was_training = self.model.training
        self.model.eval()
        try:
            chunks = [self._select(x[i : i + opts.batch_size], names, opts) for i in range(0, len(x), opts.batch_size)]
        finally:
            self.model.train(was_training)
        logits = torch.cat([c[0] for c in chunks]) if chunks else torch.zeros(0)
        chosen = [sel for c in chunks for sel in c[1]]
        targets = [t for c in chunks for t in c[2]]
        ids, scores = self._scorer.top(chosen, opts.k, opts.sign)
        labels = self._store_labels()
        items = []
        for b, sel in enumerate(chosen):
            weights = [
                (n, tuple(int(i) for i in np.unravel_index(col, store.param(n).r_shape)), a) for n, col, a in sel
            ]
            items.append(
                InputExplanation(
                    input=b,
                    predicted=int(logits[b].argmax()) if logits.dim() == 2 else -1,
                    target=targets[b],
                    weights=weights,
                    example_ids=ids[b],
                    scores=scores[b],
                    labels=None if labels is None else labels[ids[b]],
                )
            )
        return Explanation(
            items=items,
            k=opts.k,
            sign=opts.sign,
            rule=opts.rule,
            layers=names,
            unsupported=unsupported,
            logits=logits.numpy() if logits.numel() else None,
        )

    def _select(
        self, x: torch.Tensor, names: list[str], opts: ExplainOptions
    ) -> tuple[torch.Tensor, list[Chosen], list[int | None]]:
        """Forward one chunk and choose each input's entries: (logits, chosen entries, targets)."""
        gran = {n: self.store.param(n).granularity for n in names}
        acts = compute_activations(
            self.model, x, names, granularity=gran, rule=opts.rule, abs_weights=self._abs_weights(names)
        )
        out = acts.output if isinstance(acts.output, torch.Tensor) else acts.output[0]
        out = out.detach()
        rows, final = target_rows(self.model, out, opts.target)
        cands = [eligible(n, acts.values[n], self._rules[n][0], final, rows) for n in names]
        chosen = choose(cands, opts.weights_per_input, opts.outliers)
        targets: list[int | None] = [None] * len(x) if rows is None else rows.tolist()
        return out, chosen, targets


def explain(
    model: nn.Module,
    store: ResponsibilityStore,
    inputs: torch.Tensor | np.ndarray,
    options: ExplainOptions | None = None,
    /,
    **changes: Any,
) -> Explanation:
    """The ``k`` training examples most responsible for the most activated weight(s) of each input.

    ``model`` is the module the callback recorded (parameter names as in the store), e.g. the LightningModule;
    ``store`` the responsibility store of its training run; ``inputs`` a batch ``(B, ...)`` as the model takes it.
    The options are an :class:`~responsibility.query.options.ExplainOptions` and/or its fields as keywords
    (``k``, ``layers``, ``target``, ``top_weights``, ``sign``, ``outliers``, ``rule``, ``batch_size``), which
    override it: ``explain(model, store, x, k=5, layers="net.fc2.weight")``.
    """
    return Explainer(model, store).explain(inputs, options, **changes)
