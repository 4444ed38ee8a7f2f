"""The on-disk store: a Zarr v3 group holding the journal, the folded R and its top-k index.

:class:`ResponsibilityStore` is the facade; :class:`RecordingSpec` says what a store records and :class:`Layout`
how its arrays are chunked and encoded.
"""

from responsibility.store._facade import (
    DEFAULT_FOLD_BUDGET,
    DEFAULT_READ_BUDGET,
    FoldReport,
    ResponsibilityStore,
)
from responsibility.store.layout import Layout
from responsibility.store.spec import ParamSpec, RecordingSpec

__all__ = [
    "DEFAULT_FOLD_BUDGET",
    "DEFAULT_READ_BUDGET",
    "FoldReport",
    "Layout",
    "ParamSpec",
    "RecordingSpec",
    "ResponsibilityStore",
]
