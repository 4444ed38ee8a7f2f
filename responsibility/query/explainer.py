"""Explain test inputs: which training examples are most responsible for what a model does on them.

Two methods (:class:`~responsibility.query.options.QueryOptions`): ``"contribution"`` (default) scores every
training example by how much its updates of the chosen layers raised the input's target score
(:mod:`responsibility.query.contribution`); ``"most_activated"`` is Khadivpour & Guzdial's rule: R of the weight(s)
the input activates most (:mod:`~responsibility.query.activations`, :mod:`~responsibility.query.choice`,
:mod:`~responsibility.query.scoring`). :func:`attribute` returns every example's score, :func:`explain` the top k.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from responsibility.errors import LayerSelectionError, StoreMismatchError
from responsibility.kernels import topk_rows
from responsibility.progress import bar
from responsibility.query.activations import activation_modules, compute_activations
from responsibility.query.choice import Chosen, choose, eligible, final_layer
from responsibility.query.contribution import PUSH_CACHE_BYTES, Pushes, contribution_scores
from responsibility.query.forward import scores_of, target_rows
from responsibility.query.gradients import SUPPORTED, target_gradients
from responsibility.query.options import ExplainOptions, QueryOptions
from responsibility.query.results import Explanation, InputExplanation
from responsibility.query.scoring import Scorer
from responsibility.recording.selection import matches
from responsibility.store import ParamSpec, ResponsibilityStore

__all__ = ["Explainer", "attribute", "explain"]

_O = TypeVar("_O", bound=QueryOptions)


class Explainer:
    """Answers repeated queries against one model and store, keeping |W|, R and the top-k index in memory.

    The model must be the module the callback saw (names as in the store), e.g. the LightningModule. ``cache_bytes``
    bounds the R held in memory for the contribution method (larger parameters are read block by block per batch).
    """

    def __init__(self, model: nn.Module, store: ResponsibilityStore, *, cache_bytes: int = PUSH_CACHE_BYTES) -> None:
        self.model = model
        self.store = store
        self._check_model()
        self._rules = activation_modules(model)
        self._owners = {
            f"{m_name}.{leaf}" if m_name else leaf: (mod, leaf)
            for m_name, mod in model.named_modules()
            if isinstance(mod, SUPPORTED)
            for leaf in ("weight", "bias")
            if getattr(mod, leaf, None) is not None
        }
        self._abs_w: dict[str, tuple[int, torch.Tensor]] = {}
        self._scorer = Scorer(store)
        self._pushes = Pushes(store, cache_bytes)
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

    def resolve_layers(
        self, layers: str | Sequence[str] | None, method: str = "most_activated"
    ) -> tuple[list[str], list[str]]:
        """(selected parameters the method supports, selected ones it does not) in store order."""
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
        rules: dict[str, Any] = self._rules if method == "most_activated" else self._owners
        supported = [n for n in chosen if n in rules]
        unsupported = [n for n in chosen if n not in rules]
        if not supported:
            kinds = "Linear, Conv1d, Conv2d" if method == "most_activated" else "Linear, Conv2d"
            raise LayerSelectionError(
                f"no selected parameter belongs to a layer that method={method!r} explains ({kinds}); "
                f"selected: {chosen}"
            )
        return supported, unsupported

    # ------------------------------------------------------------------------------------------------ queries
    def attribute(
        self, inputs: torch.Tensor | np.ndarray, options: QueryOptions | None = None, /, **changes: Any
    ) -> np.ndarray:
        """Every training example's score for every input, ``(len(inputs), num_examples)`` float32; see
        :func:`attribute`."""
        opts = _options(QueryOptions, options, changes)
        x = self._inputs(inputs, opts)
        out = np.empty((len(x), self.store.num_examples), dtype=np.float32)
        for start, batch in self._batches(x, opts):
            if opts.method == "contribution":
                out[start : start + len(batch.scores)] = batch.dense.numpy()
            else:
                out[start : start + len(batch.scores)] = self._scorer.dense(batch.chosen, opts.sign).numpy()
        return out

    def explain(
        self, inputs: torch.Tensor | np.ndarray, options: ExplainOptions | None = None, /, **changes: Any
    ) -> Explanation:
        """The ``k`` most responsible training examples of each input; see :func:`explain`."""
        opts = _options(ExplainOptions, options, changes)
        store = self.store
        if opts.k > store.num_examples:
            raise ValueError(f"k must be in [1, {store.num_examples}], got {opts.k}")
        x = self._inputs(inputs, opts)
        labels = self._store_labels()
        items: list[InputExplanation] = []
        logits: list[torch.Tensor] = []
        names: list[str] = []
        unsupported: list[str] = []
        for start, batch in self._batches(x, opts):
            names, unsupported = batch.names, batch.unsupported
            if opts.method == "contribution":
                ids_t, vals_t = topk_rows(batch.dense, opts.k)
                ids, vals = ids_t.numpy(), vals_t.numpy()
            else:
                ids, vals = self._scorer.top(batch.chosen, opts.k, opts.sign)
            rows = batch.rows.tolist() if batch.rows is not None else [None] * len(ids)
            for b in range(len(ids)):
                items.append(
                    InputExplanation(
                        input=start + b,
                        predicted=int(batch.scores[b].argmax()),
                        target=rows[b],
                        weights=self._weights(batch.chosen[b]) if batch.chosen else [],
                        example_ids=ids[b],
                        scores=vals[b],
                        labels=None if labels is None else labels[ids[b]],
                    )
                )
            logits.append(batch.scores)
        if not logits:
            names, unsupported = self.resolve_layers(opts.layers, opts.method)
        return Explanation(
            items=items,
            k=opts.k,
            sign=opts.sign,
            rule=opts.rule,
            layers=names,
            unsupported=unsupported,
            logits=torch.cat(logits).numpy() if logits else None,
            method=opts.method,
        )

    # ------------------------------------------------------------------------------------------------ batches
    def _inputs(self, inputs: torch.Tensor | np.ndarray, opts: QueryOptions) -> torch.Tensor:
        x = torch.as_tensor(inputs)
        if x.is_floating_point():  # float64 arrays meet float32 weights; integer inputs (tokens) stay integers
            dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), x.dtype)
            x = x.to(dtype)
        if isinstance(opts.targets, tuple) and len(opts.targets) != len(x):
            raise ValueError(f"targets has {len(opts.targets)} entries for {len(x)} inputs: give one per input")
        return x

    def _batches(self, x: torch.Tensor, opts: QueryOptions) -> Iterator[tuple[int, _Batch]]:
        names, unsupported = self.resolve_layers(opts.layers, opts.method)
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        called: set[str] = set()
        # A bar only for queries that last (a test set), as for reads over many columns.
        with _eval(self.model), bar(total=len(x), desc="inputs", unit="input", delay=2.0) as shown:
            for start in range(0, len(x), opts.batch_size):
                chunk = x[start : start + opts.batch_size].to(device)
                targets = opts.targets[start : start + len(chunk)] if isinstance(opts.targets, tuple) else opts.targets
                if opts.method == "contribution":
                    batch = self._contribution_batch(chunk, names, targets, opts)
                else:
                    batch = self._activation_batch(chunk, names, targets, opts)
                called |= batch.called
                batch.names = [n for n in names if n in called]
                batch.unsupported = unsupported + [n for n in names if n not in called]
                yield start, batch
                shown.update(len(chunk))

    def _contribution_batch(self, x: torch.Tensor, names: list[str], targets: Any, opts: QueryOptions) -> _Batch:
        by_module: dict[nn.Module, list[tuple[ParamSpec, str]]] = {}
        for n in names:
            module, leaf = self._owners[n]
            by_module.setdefault(module, []).append((self.store.param(n), leaf))
        grads = target_gradients(self.model, x, list(by_module), opts, targets)
        dense = contribution_scores(grads, list(by_module.items()), self._pushes, opts.sign, opts.normalize)
        called = {spec.name for module, params in by_module.items() if module in grads.calls for spec, _ in params}
        return _Batch(grads.scores.cpu(), grads.rows.cpu(), called, dense=dense)

    def _activation_batch(self, x: torch.Tensor, names: list[str], targets: Any, opts: QueryOptions) -> _Batch:
        gran = {n: self.store.param(n).granularity for n in names}
        acts = compute_activations(
            self.model,
            x,
            names,
            granularity=gran,
            rule=opts.rule,
            abs_weights=self._abs_weights(names),
            forward=opts.forward,
        )
        scores = scores_of(acts.output, len(x), opts.output).detach()
        rows = target_rows(scores, targets)
        final = final_layer(self.model, scores.shape[1]) if rows is not None else None
        called = [n for n in names if n in acts.values]
        cands = [
            eligible(n, acts.values[n].cpu(), self._rules[n][0], final, None if rows is None else rows.cpu())
            for n in called
        ]
        chosen = choose(cands, opts.weights_per_input, opts.outliers)
        return _Batch(scores.cpu(), None if rows is None else rows.cpu(), set(called), chosen=chosen)

    # ------------------------------------------------------------------------------------------------ helpers
    def _weights(self, chosen: Chosen) -> list[tuple[str, tuple[int, ...], float]]:
        return [
            (n, tuple(int(i) for i in np.unravel_index(col, self.store.param(n).r_shape)), a) for n, col, a in chosen
        ]

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


class _Batch:
    """One batch's answer: scores (B, classes), target rows, the parameters that took part, and either the dense
    example scores (contribution) or the chosen entries (most_activated)."""

    def __init__(
        self,
        scores: torch.Tensor,
        rows: torch.Tensor | None,
        called: set[str],
        dense: torch.Tensor | None = None,
        chosen: list[Chosen] | None = None,
    ) -> None:
        self.scores, self.rows, self.called = scores, rows, called
        self._dense, self._chosen = dense, chosen
        self.names: list[str] = []
        self.unsupported: list[str] = []

    @property
    def dense(self) -> torch.Tensor:
        if self._dense is None:
            raise RuntimeError("dense scores belong to method='contribution'")
        return self._dense

    @property
    def chosen(self) -> list[Chosen]:
        return self._chosen or []


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    if not model.training:  # already in eval mode: nothing to switch (and switching walks every module)
        yield
        return
    model.eval()
    try:
        yield
    finally:
        model.train()


def _options(kind: type[_O], options: QueryOptions | None, changes: dict[str, Any]) -> _O:
    if options is None:
        return kind().with_changes(changes)
    if not isinstance(options, kind):
        raise TypeError(f"options must be a {kind.__name__}, got {type(options).__name__}")
    return options.with_changes(changes)


def attribute(
    model: nn.Module,
    store: ResponsibilityStore,
    inputs: torch.Tensor | np.ndarray,
    options: QueryOptions | None = None,
    /,
    **changes: Any,
) -> np.ndarray:
    """Every training example's score for every input: a dense ``(len(inputs), num_examples)`` float32 array.

    ``model`` is the module the callback recorded (parameter names as in the store), e.g. the LightningModule;
    ``store`` the responsibility store of its training run; ``inputs`` a batch ``(B, ...)`` as the model takes it
    (integer inputs such as tokens stay integers). The options are a
    :class:`~responsibility.query.options.QueryOptions` and/or its fields as keywords, which override it:
    ``attribute(model, store, x, targets=labels, sign="net")``. By default (``method="contribution"``,
    ``sign="net"``) a positive score means the example's updates raised the input's target score (the predicted
    class unless ``targets`` says otherwise), a negative one that they lowered it. Inputs are processed
    ``batch_size`` at a time; R is read once and kept in memory within ``cache_bytes`` of an :class:`Explainer`.
    """
    return Explainer(model, store).attribute(inputs, options, **changes)


def explain(
    model: nn.Module,
    store: ResponsibilityStore,
    inputs: torch.Tensor | np.ndarray,
    options: ExplainOptions | None = None,
    /,
    **changes: Any,
) -> Explanation:
    """The ``k`` most responsible training examples of each input: the top ``k`` of :func:`attribute` with the same
    options (ties to the smaller example id), with labels, predictions and targets.

    Options as for :func:`attribute`, plus ``k`` (:class:`~responsibility.query.options.ExplainOptions`):
    ``explain(model, store, x, k=5)``; ``explain(model, store, x, method="most_activated", sign="abs")`` is the
    paper's rule.
    """
    return Explainer(model, store).explain(inputs, options, **changes)
