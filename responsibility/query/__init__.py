"""Query side: which training examples are most responsible for a model's behaviour on a test input.

Modules by role: ``activations`` (per-weight activations of an input), ``choice`` (which weights each input
activates), ``scoring`` (the top-k examples of the chosen weights), ``options`` (one options object),
``results`` (what a query returns and its exports) and ``explainer`` (the entry points).
"""

from responsibility.query.activations import Activations, activation_modules, compute_activations
from responsibility.query.choice import final_layer, robust_z
from responsibility.query.explainer import Explainer, explain
from responsibility.query.options import MAX_OUTLIERS, ExplainOptions
from responsibility.query.results import Explanation, InputExplanation
from responsibility.query.scoring import top_examples

__all__ = [
    "MAX_OUTLIERS",
    "Activations",
    "ExplainOptions",
    "Explainer",
    "Explanation",
    "InputExplanation",
    "activation_modules",
    "compute_activations",
    "explain",
    "final_layer",
    "robust_z",
    "top_examples",
]
