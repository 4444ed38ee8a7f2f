"""Query side: which training examples are most responsible for a model's behaviour on a test input.

Modules by role: ``options`` (one options object), ``forward`` (calling the model, its scores, the targets),
``gradients`` and ``contribution`` (the default method: each example's contribution to the input's target score),
``activations``, ``choice`` and ``scoring`` (the paper's most-activated-weight method), ``results`` (what a query
returns and its exports) and ``explainer`` (the entry points :func:`attribute` and :func:`explain`).
"""

from responsibility.query.activations import Activations, activation_modules, compute_activations
from responsibility.query.choice import final_layer, robust_z
from responsibility.query.explainer import Explainer, attribute, explain
from responsibility.query.options import MAX_OUTLIERS, ExplainOptions, QueryOptions
from responsibility.query.results import Explanation, InputExplanation

__all__ = [
    "MAX_OUTLIERS",
    "Activations",
    "ExplainOptions",
    "Explainer",
    "Explanation",
    "InputExplanation",
    "QueryOptions",
    "activation_modules",
    "attribute",
    "compute_activations",
    "explain",
    "final_layer",
    "robust_z",
]
