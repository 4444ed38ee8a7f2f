"""responsibility: which training examples made my model do that? Per-weight responsibility, recorded in training.

``ResponsibilityStore`` and the recorder are framework-free; ``ResponsibilityCallback`` (Lightning) is imported
lazily so that ``import responsibility`` does not import Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BudgetError,
    ExampleIdError,
    LayerSelectionError,
    ParameterChangedError,
    ResponsibilityError,
    StoreCorruptError,
    StoreExistsError,
    StoreMismatchError,
    StoreWriteError,
    UnsupportedStrategyError,
)
from .layout import Layout  # noqa: E402
from .spec import ParamSpec, RecordingSpec  # noqa: E402
from .store import ResponsibilityStore  # noqa: E402

if TYPE_CHECKING:
    from callbacks.responsibility import ResponsibilityCallback

__all__ = [
    "BudgetError",
    "ExampleIdError",
    "LayerSelectionError",
    "Layout",
    "ParamSpec",
    "ParameterChangedError",
    "RecordingSpec",
    "ResponsibilityCallback",
    "ResponsibilityError",
    "ResponsibilityStore",
    "StoreCorruptError",
    "StoreExistsError",
    "StoreMismatchError",
    "StoreWriteError",
    "UnsupportedStrategyError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "ResponsibilityCallback":
        from callbacks.responsibility import ResponsibilityCallback

        return ResponsibilityCallback
    raise AttributeError(f"module 'responsibility' has no attribute {name!r}")
