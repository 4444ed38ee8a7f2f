"""The on-disk store: a Zarr v3 group holding the journal, the folded R and its top-k index.

:class:`ResponsibilityStore` is the facade; :class:`RecordingSpec` says what a store records and :class:`Layout`
how its arrays are chunked and encoded. Private modules, one job each: ``_format`` (version, metadata digest,
manifest rules), ``_state`` (group, metadata and manifest shared by the parts), ``_arrays`` (checked array
access), ``_journal`` (journal writes, commit, rollback, membership), ``_accumulate`` (the one journal -> R
path), ``_running`` (R summed while the journal is written), ``_fold`` (fold and top-k index) and ``_read``
(reads, top-k answers, column blocks, epoch windows).
"""

from responsibility.store._facade import ResponsibilityStore
from responsibility.store._fold import DEFAULT_FOLD_BUDGET, FoldPlan, FoldReport
from responsibility.store._read import DEFAULT_READ_BUDGET
from responsibility.store._running import RunningSums
from responsibility.store.layout import Layout
from responsibility.store.spec import ParamSpec, RecordingSpec

__all__ = [
    "DEFAULT_FOLD_BUDGET",
    "DEFAULT_READ_BUDGET",
    "FoldPlan",
    "FoldReport",
    "Layout",
    "ParamSpec",
    "RecordingSpec",
    "ResponsibilityStore",
    "RunningSums",
]
