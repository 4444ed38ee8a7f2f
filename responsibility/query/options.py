"""The options of a query, in one frozen object validated once: :class:`QueryOptions` (what :func:`attribute`
computes) and :class:`ExplainOptions` (the same, plus ``k`` for :func:`explain`'s top-k)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch import nn

from responsibility.choices import ActivationRule, QueryMethod, QueryNormalize, QuerySign, check_choice

__all__ = ["MAX_OUTLIERS", "ExplainOptions", "QueryOptions"]

MAX_OUTLIERS = 32

Targets = int | Sequence[int] | np.ndarray | torch.Tensor | Literal["any"] | None
ForwardFn = Callable[[nn.Module, Any], Any]
OutputFn = Callable[[Any], torch.Tensor]
_O = TypeVar("_O", bound="QueryOptions")


@dataclass(frozen=True)
class QueryOptions:
    """How a query scores every training example for each input (see docs/query.md for the methods).

    Attributes:
        method: ``"contribution"`` (default): each example's push on every weight of the chosen layers, weighted by
            the input's own gradient of the target output (how much the example's updates raised that output), so
            the explanation depends on the input's activations everywhere; ``"most_activated"``: the paper's rule,
            R of the input's most activated weight(s).
        targets: what is explained: ``None`` = each input's predicted class, a class index for all inputs, or one
            class index per input; ``"any"`` (most_activated only) lets the paper rule pick any output unit.
        layers: parameter/module names or glob patterns among the store's parameters; ``None`` = all that the
            method supports (others are listed in ``Explanation.unsupported``).
        sign: ``"net"`` = R_pos - R_neg (examples that raised the target score positive, lowered it negative),
            ``"abs"``, ``"pos"`` or ``"neg"``.
        normalize: how ``contribution`` weighs examples and layers: ``"cosine"`` (default) divides each example's
            push on a layer by its size and gives every layer an equal vote; ``"layer"`` only gives every layer an
            equal vote; ``"none"`` keeps the raw first-order change of the target output (additive over examples).
        top_weights: most_activated: how many highly activated entries to combine (default 1; with
            ``outliers``, at most :data:`MAX_OUTLIERS`).
        outliers: most_activated: robust z-score threshold selecting unusually activated entries.
        rule: most_activated: ``"sum"`` or ``"max"`` aggregation of convolution terms over positions.
        batch_size: inputs per forward pass (bounds the working memory).
        forward: ``forward(model, batch)`` calls the model (default ``model(batch)``), e.g.
            ``lambda m, x: m(x, x)`` for a model whose forward takes two arguments.
        output: ``output(result)`` picks the ``(batch, classes)`` scores to explain from what the forward
            returns (default: the result itself), e.g. ``lambda out: out["logits"][:, -1]`` for the last token.

    Make one with keywords, or derive one with :meth:`with_changes`; every query function also takes the fields as
    keywords.
    """

    method: QueryMethod = "contribution"
    targets: Targets = None
    layers: str | Sequence[str] | None = None
    sign: QuerySign = "net"
    normalize: QueryNormalize = "cosine"
    top_weights: int | None = None
    outliers: float | None = None
    rule: ActivationRule = "sum"
    batch_size: int = 256
    forward: ForwardFn | None = None
    output: OutputFn | None = None

    def __post_init__(self) -> None:
        check_choice("method", self.method, QueryMethod)
        check_choice("sign", self.sign, QuerySign)
        check_choice("normalize", self.normalize, QueryNormalize)
        check_choice("rule", self.rule, ActivationRule)
        if isinstance(self.layers, Sequence) and not isinstance(self.layers, str):
            object.__setattr__(self, "layers", tuple(self.layers))  # immutable, like the rest
        object.__setattr__(self, "targets", _targets(self.targets))
        if self.targets == "any" and self.method != "most_activated":
            raise ValueError("targets='any' lets the paper rule pick any output unit: it needs method='most_activated'")
        if self.method != "most_activated" and (self.top_weights is not None or self.outliers is not None):
            raise ValueError("top_weights and outliers choose weights for method='most_activated'")
        if self.top_weights is not None and (not _is_int(self.top_weights) or self.top_weights < 1):
            raise ValueError(f"top_weights must be >= 1, got {self.top_weights}")
        if self.outliers is not None and not self.outliers > 0:
            raise ValueError(f"outliers must be a positive z-score threshold, got {self.outliers}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("forward", "output"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable, got {type(getattr(self, name)).__name__}")

    @property
    def weights_per_input(self) -> int:
        """most_activated: the most entries one input's explanation combines."""
        if self.top_weights is not None:
            return self.top_weights
        return MAX_OUTLIERS if self.outliers is not None else 1

    def with_changes(self: _O, changes: Mapping[str, Any]) -> _O:
        """A copy with some options changed (validated again); unknown names are a ``TypeError`` naming them."""
        if not changes:
            return self
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for {type(self).__name__}; the options are {sorted(names)}")
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ExplainOptions(QueryOptions):
    """:class:`QueryOptions` plus ``k``, the number of training examples per input that :func:`explain` returns
    (checked against the store when the query runs)."""

    k: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _is_int(self.k) or self.k < 1:
            raise ValueError(f"k must be in [1, number of training examples], got {self.k}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _targets(targets: Any) -> int | tuple[int, ...] | str | None:
    """None, "any", one class index, or a tuple of one class index per input."""
    if targets is None or (isinstance(targets, str) and targets == "any"):
        return targets
    if isinstance(targets, str):
        raise ValueError(f"targets must be None (predicted), a class index or one per input, got {targets!r}")
    if _is_int(targets):
        return _class_index(targets)
    values = targets.detach().cpu().numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
    if values.ndim == 0 and _is_int(values.item()):
        return _class_index(values.item())
    if values.ndim != 1 or not (values.size == 0 or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(
            f"targets must be None (predicted), a class index or a 1-D sequence of class indices, got {targets!r}"
        )
    return tuple(_class_index(v) for v in values.tolist())


def _class_index(value: Any) -> int:
    if int(value) < 0:
        raise ValueError(f"target class indices must be >= 0, got {value}")
    return int(value)
