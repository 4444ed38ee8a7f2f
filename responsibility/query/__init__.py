"""Query side: which training examples are most responsible for a model's behaviour on a test input."""

from responsibility.query.activations import Activations, activation_modules, compute_activations
from responsibility.query.explainer import (
    MAX_OUTLIERS,
    Explainer,
    Explanation,
    InputExplanation,
    explain,
    final_layer,
    robust_z,
    top_examples,
)

__all__ = [
    "MAX_OUTLIERS",
    "Activations",
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
