"""The options of a query, in one frozen object validated once: :class:`ExplainOptions`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from responsibility.choices import ActivationRule, Sign, check_choice

__all__ = ["MAX_OUTLIERS", "ExplainOptions"]

MAX_OUTLIERS = 32


@dataclass(frozen=True)
class ExplainOptions:
    """How :func:`~responsibility.query.explain` chooses weights and ranks training examples.

    Attributes:
        k: examples per input.
        layers: parameter/module names or glob patterns among the store's parameters; ``None`` = all that have
            an activation rule (others are listed in ``Explanation.unsupported``).
        target: ``"predicted"``, a class index, or ``None``; restricts only the final layer.
        top_weights: how many highly activated entries to combine (default 1; with ``outliers``, at most
            :data:`MAX_OUTLIERS`).
        sign: rank by R (``"abs"``), R_pos or R_neg.
        outliers: robust z-score threshold selecting unusually activated entries within their parameter.
        rule: ``"sum"`` or ``"max"`` aggregation of convolution terms over positions.
        batch_size: inputs per forward pass (bounds the memory of per-weight activations).

    Build one with keywords, or derive one with :meth:`with_changes`; ``explain(model, store, x, k=5)`` and
    ``explain(model, store, x, options)`` are the same call styles that :class:`~responsibility.query.Explainer`
    takes. ``k`` is checked against the store when the query runs.
    """

    k: int = 10
    layers: str | tuple[str, ...] | None = None
    target: str | int | None = "predicted"
    top_weights: int | None = None
    sign: Sign = "abs"
    outliers: float | None = None
    rule: ActivationRule = "sum"
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_choice("sign", self.sign, Sign)
        check_choice("rule", self.rule, ActivationRule)
        if isinstance(self.layers, Sequence) and not isinstance(self.layers, str):
            object.__setattr__(self, "layers", tuple(self.layers))  # hashable and immutable, like the rest
        if not _is_int(self.k) or self.k < 1:
            raise ValueError(f"k must be in [1, number of training examples], got {self.k}")
        if self.top_weights is not None and (not _is_int(self.top_weights) or self.top_weights < 1):
            raise ValueError(f"top_weights must be >= 1, got {self.top_weights}")
        if self.outliers is not None and not self.outliers > 0:
            raise ValueError(f"outliers must be a positive z-score threshold, got {self.outliers}")
        if not (self.target is None or self.target == "predicted" or _is_int(self.target)):
            raise ValueError(f"target must be 'predicted', None or a class index, got {self.target!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def weights_per_input(self) -> int:
        """The most entries one input's explanation combines."""
        if self.top_weights is not None:
            return self.top_weights
        return MAX_OUTLIERS if self.outliers is not None else 1

    def with_changes(self, changes: Mapping[str, Any]) -> ExplainOptions:
        """A copy with some options changed (validated again); unknown names are a ``TypeError`` naming them."""
        if not changes:
            return self
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown explain option(s) {unknown}; the options are {sorted(names)}")
        return dataclasses.replace(self, **changes)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
