"""responsibility: which training examples made my model do that? Per-weight responsibility, recorded in training.

The public API lives here. The core (store, recording, query, analysis) is framework-free; the Lightning
callbacks are imported on first use, so ``import responsibility`` does not import Lightning::

    from responsibility import ResponsibilityCallback, ResponsibilityStore, attribute, explain
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from responsibility.analysis import (  # noqa: E402
    class_agreement,
    class_share,
    diagonal_dominance,
    group_responsibility,
    held_out_loss,
    interclass_matrix,
    label_push,
    offline,
    self_responsibility,
)
from responsibility.errors import (  # noqa: E402
    BudgetError,
    ExampleIdError,
    LayerSelectionError,
    ModelOutputError,
    NotFoldedError,
    OptimizerMismatchError,
    ParameterChangedError,
    ResponsibilityError,
    StoreCorruptError,
    StoreExistsError,
    StoreMismatchError,
    StoreWriteError,
    UnsupportedStrategyError,
)
from responsibility.query import (  # noqa: E402
    Explainer,
    ExplainOptions,
    Explanation,
    InputExplanation,
    QueryOptions,
    attribute,
    explain,
)
from responsibility.recording import Recorder, RecordingSession  # noqa: E402
from responsibility.store import FoldReport, Layout, ParamSpec, RecordingSpec, ResponsibilityStore  # noqa: E402

if TYPE_CHECKING:
    from responsibility.callbacks import MarginCallback, ResponsibilityCallback
    from responsibility.explorer import explore

# Names whose modules import Lightning (or the explorer's web stack): loaded on first access.
_LAZY = {
    "MarginCallback": "responsibility.callbacks",
    "ResponsibilityCallback": "responsibility.callbacks",
    "explore": "responsibility.explorer",
}

__all__ = [
    "BudgetError",
    "ExampleIdError",
    "ExplainOptions",
    "Explainer",
    "Explanation",
    "FoldReport",
    "InputExplanation",
    "LayerSelectionError",
    "Layout",
    "MarginCallback",
    "ModelOutputError",
    "NotFoldedError",
    "OptimizerMismatchError",
    "ParamSpec",
    "ParameterChangedError",
    "QueryOptions",
    "RecordingSpec",
    "Recorder",
    "RecordingSession",
    "ResponsibilityCallback",
    "ResponsibilityError",
    "ResponsibilityStore",
    "StoreCorruptError",
    "StoreExistsError",
    "StoreMismatchError",
    "StoreWriteError",
    "UnsupportedStrategyError",
    "__version__",
    "attribute",
    "class_agreement",
    "class_share",
    "diagonal_dominance",
    "explain",
    "explore",
    "group_responsibility",
    "held_out_loss",
    "interclass_matrix",
    "label_push",
    "offline",
    "self_responsibility",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'responsibility' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
