"""Progress bars for long work (fold, top-k, reads over many columns, explaining a test set, group sums).

tqdm, as Lightning's default progress bar uses. A bar shows only on a terminal (tqdm's ``disable=None``) and
never while :func:`quiet` is in effect (the CLI's ``--quiet``), so logs and pipes stay clean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_quiet = False


def bar(iterable: Iterable[T] | None = None, *, total: float | None = None, desc: str = "", **kwargs: Any) -> tqdm:
    """A tqdm bar that disables itself off a terminal and under :func:`quiet`."""
    return tqdm(iterable, total=total, desc=desc, disable=True if _quiet else None, leave=False, **kwargs)


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """Within the block, no progress bar is shown (``enabled=False`` leaves them as they are)."""
    global _quiet
    before, _quiet = _quiet, _quiet or enabled
    try:
        yield
    finally:
        _quiet = before
