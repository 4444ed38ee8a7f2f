"""Exceptions raised by responsibility.

Every user error is a subclass of :class:`ResponsibilityError` so callers can catch the family; most also
subclass the builtin they refine (``ValueError``, ``FileExistsError``...) so generic handlers keep working.
"""

from __future__ import annotations


class ResponsibilityError(Exception):
    """Base class of all errors raised by this library."""


class LayerSelectionError(ResponsibilityError, ValueError):
    """A ``layers`` or ``granularity`` pattern matches no parameter, or a setting is invalid."""


class ExampleIdError(ResponsibilityError, ValueError):
    """Example ids are missing, of the wrong dtype, or out of range."""


class StoreMismatchError(ResponsibilityError, ValueError):
    """An existing store was recorded for another model, dataset or settings."""


class StoreExistsError(ResponsibilityError, FileExistsError):
    """A fresh run would write into a store that already holds recorded steps."""


class StoreCorruptError(ResponsibilityError, OSError):
    """A store's metadata or chunks cannot be read or are inconsistent."""


class StoreWriteError(ResponsibilityError, OSError):
    """Writing to the store failed (read-only location, full disk, network): what was committed is intact."""


class ParameterChangedError(ResponsibilityError, RuntimeError):
    """A tracked parameter was replaced by another tensor or reshaped during training."""


class BudgetError(ResponsibilityError, MemoryError):
    """A read would need more memory than its budget allows."""


class UnsupportedStrategyError(ResponsibilityError, RuntimeError):
    """The training strategy shards parameters, so weights cannot be snapshotted per rank."""


class NotFoldedError(ResponsibilityError, LookupError):
    """A parameter's R is not folded (or the fold is older than the journal), so there is no R array to read."""
