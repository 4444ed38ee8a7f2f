"""Values an explorer computes once: in memory for the session, and on disk in the run directory for the next one.

Derived arrays (predictions, scores, explanations of the test set) are saved as ``.npz`` files (read back with
``allow_pickle=False``) under ``RUN_DIR/.explorer/cache-<fingerprint>/``. The fingerprint changes whenever the
store or the checkpoint does, so a stale file is never read. Several threads asking for one key wait for a single
computation.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

Arrays = dict[str, np.ndarray]


class OnceCache:
    """Per-key values computed once, thread-safely: one caller computes, the others wait for it."""

    def __init__(self) -> None:
        self._values: dict[str, object] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, compute: Callable[[], object]) -> object:
        if key in self._values:
            return self._values[key]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = compute()
        return self._values[key]

    def ready(self, key: str) -> bool:
        return key in self._values


class DiskCache(OnceCache):
    """A :class:`OnceCache` of array dicts that are also kept as ``.npz`` files in ``directory``."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        super().__init__()
        self.directory = root / f"cache-{fingerprint}"
        self._writable = True

    def arrays(self, key: str, compute: Callable[[], Arrays]) -> Arrays:
        return self.get(key, lambda: self._load_or_compute(key, compute))  # type: ignore[return-value]

    def _load_or_compute(self, key: str, compute: Callable[[], Arrays]) -> Arrays:
        path = self.directory / f"{key}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as f:
                    return {name: f[name] for name in f.files}
            except (OSError, ValueError):
                pass  # an unreadable cache file is recomputed (and overwritten) below
        value = compute()
        self._save(path, value)
        return value

    def _save(self, path: Path, value: Arrays) -> None:
        if not self._writable:
            return
        tmp = None
        try:
            self._prepare()
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, allow_pickle=False, **value)
            os.replace(tmp, path)
        except OSError:
            self._writable = False  # a read-only run directory: keep values in memory only
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def _prepare(self) -> None:
        if self.directory.is_dir():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # Caches of an older store or checkpoint can never be read again.
        for old in self.directory.parent.glob("cache-*"):
            if old != self.directory and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
