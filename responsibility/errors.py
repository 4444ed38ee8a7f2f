"""Exceptions raised by responsibility.

Every user error is a subclass of :class:`ResponsibilityError` so callers can catch the family; most also
subclass the builtin they refine (``ValueError``, ``FileExistsError``...) so generic handlers keep working.

Errors that a recording setting can fix carry that advice as data in :attr:`ResponsibilityError.fixes`, so a
configuration system can give it in its own form: the message says ``overwrite=True``, a Hydra run can say
``callbacks.responsibility.overwrite=true`` with ``error.render(lambda name, value: ...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

# One fix: the recording settings (arguments of ResponsibilityCallback and RecordingSession; for DatasetNotFoundError
# those of the experiments' data module) to change, with their new values; ``...`` stands for a value only the user
# knows (a new store path, the key of the ids in the batch, a data directory).
Fix = Mapping[str, Any]


def python_setting(name: str, value: Any) -> str:
    """A setting as a Python keyword argument: ``overwrite=True``, ``ids_key=...``."""
    return f"{name}=..." if value is ... else f"{name}={value!r}"


class ResponsibilityError(Exception):
    """Base class of all errors raised by this library.

    Attributes:
        problem: what went wrong, without the advice on settings.
        fixes: alternative ways to fix it by changing recording settings (possibly none), each a mapping from
            setting names to values (``...`` where only the user knows the value). ``str(error)`` gives them in
            Python form after the problem; :meth:`render` in any other form.
    """

    def __init__(self, problem: str, *, fixes: Sequence[Fix] = ()) -> None:
        self.problem = problem
        self.fixes: tuple[dict[str, Any], ...] = tuple(dict(f) for f in fixes)
        super().__init__(self.render())

    def render(self, setting: Callable[[str, Any], str] = python_setting) -> str:
        """The message, with each fix's settings written by ``setting(name, value)``."""
        if not self.fixes:
            return self.problem
        alternatives = " or ".join(" and ".join(setting(k, v) for k, v in fix.items()) for fix in self.fixes)
        return f"{self.problem} Settings that fix it: {alternatives}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the fixes across pickling (errors travel between DDP ranks).
        return (_rebuild, (type(self), self.problem, self.fixes))


def _rebuild(cls: type[ResponsibilityError], problem: str, fixes: tuple[dict[str, Any], ...]) -> ResponsibilityError:
    return cls(problem, fixes=fixes)


class LayerSelectionError(ResponsibilityError, ValueError):
    """A ``layers`` or ``granularity`` pattern matches no parameter, or a setting is invalid."""


class ExampleIdError(ResponsibilityError, ValueError):
    """Example ids are missing, of the wrong dtype, or out of range."""


class ModelOutputError(ResponsibilityError, ValueError):
    """A model's output is not the ``(batch, classes)`` scores a query explains (pass ``output=`` to pick them)."""


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


class OptimizerMismatchError(ResponsibilityError, ValueError):
    """The training's optimizer does not fit a recording setting (``journal_delta="derived"`` needs plain SGD)."""


class BudgetError(ResponsibilityError, MemoryError):
    """A read would need more memory than its budget allows."""


class UnsupportedStrategyError(ResponsibilityError, RuntimeError):
    """The training strategy shards parameters, so weights cannot be snapshotted per rank."""


class NotFoldedError(ResponsibilityError, LookupError):
    """A parameter's R is not folded (or the fold is older than the journal), so there is no R array to read."""


class DatasetNotFoundError(ResponsibilityError, FileNotFoundError):
    """An experiment dataset's files are not where the settings and the default locations point."""


class CurationError(ResponsibilityError, ValueError):
    """A curation file or change is malformed, out of range, or does not fit the run's dataset."""


class ServeError(ResponsibilityError, OSError):
    """The explorer cannot listen on the requested host and port (in use, not allowed)."""
