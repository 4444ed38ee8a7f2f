"""The explorer's background retraining: one job at a time, a subprocess with live progress that can be cancelled.

A job runs ``python -m responsibility.explorer.retrain SOURCE NEW`` in its own process group, logging to
``NEW/retrain.log``. The new run directory is a sibling of the source, ``<source>-curated-<n>``, chosen by the
server (never by the client). When the job succeeds the new run is opened and added to the app; a cancelled job's
directory (which the job itself created) is removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["LOG_FILE", "PROGRESS_FILE", "Busy", "Jobs"]

LOG_FILE = "retrain.log"
# Written by the job (responsibility.explorer.retrain.ProgressFile), inside the new run directory.
PROGRESS_FILE = Path(".explorer") / "progress.json"
_TAIL = 4000


class Busy(RuntimeError):
    """A job is already running (one at a time per app)."""


class _Job:
    def __init__(self, source: int, source_dir: Path, target: Path, process: subprocess.Popen) -> None:
        self.source = source
        self.source_dir = source_dir
        self.target = target
        self.process = process
        self.started = time.time()
        self.finished: float | None = None
        self.state = "running"
        self.cancelled = False
        self.new_run: int | None = None
        self.error = ""
        self.log_tail = ""

    def log(self) -> str:
        try:
            with open(self.target / LOG_FILE, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _TAIL))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return self.log_tail

    def progress(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.target / PROGRESS_FILE).read_text())
        except (OSError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "source": self.source,
            "target": self.target.name,
            "started": self.started,
            "seconds": (self.finished or time.time()) - self.started,
            "progress": self.progress() if self.state == "running" else None,
            "new_run": self.new_run,
            "error": self.error,
            "log": self.log() if self.state != "cancelled" else self.log_tail,
        }


class Jobs:
    """Starts, watches and cancels retraining jobs; ``on_success(target_dir)`` opens the new run and returns its
    index in the app."""

    def __init__(self, on_success: Callable[[Path], int]) -> None:
        self._on_success = on_success
        self._job: _Job | None = None
        self._lock = threading.Lock()

    @staticmethod
    def target_for(source_dir: Path) -> Path:
        n = 1
        while (source_dir.parent / f"{source_dir.name}-curated-{n}").exists():
            n += 1
        return source_dir.parent / f"{source_dir.name}-curated-{n}"

    def start(self, source: int, source_dir: Path) -> dict[str, Any]:
        with self._lock:
            if self._job is not None and self._job.state == "running":
                raise Busy("a retraining job is already running; wait for it or cancel it")
            target = self.target_for(source_dir)
            target.mkdir(parents=False, exist_ok=False)
            log = open(target / LOG_FILE, "wb")  # noqa: SIM115 (the child process owns it from here)
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "responsibility.explorer.retrain", str(source_dir), str(target)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group: cancelling stops its workers too
                )
            finally:
                log.close()
            self._job = _Job(source, source_dir, target, process)
            threading.Thread(target=self._watch, args=(self._job,), daemon=True).start()
            return self._job.to_json()

    def _watch(self, job: _Job) -> None:
        rc = job.process.wait()
        job.log_tail = job.log()
        if job.cancelled:
            shutil.rmtree(job.target, ignore_errors=True)
            job.state = "cancelled"
        elif rc != 0:
            job.state, job.error = "failed", f"training exited with status {rc}"
        else:
            try:
                job.new_run = self._on_success(job.target)
                job.state = "done"
            except Exception as exc:  # the run trained but cannot be opened: say why
                job.state, job.error = "failed", f"the new run cannot be opened: {exc}"
        job.finished = time.time()

    def status(self) -> dict[str, Any] | None:
        job = self._job
        return None if job is None else job.to_json()

    def cancel(self, timeout: float = 15.0) -> dict[str, Any]:
        job = self._job
        if job is None or job.state != "running":
            raise LookupError("no retraining job is running")
        job.cancelled = True
        self._signal(job, signal.SIGTERM)
        try:
            job.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(job, signal.SIGKILL)
            job.process.wait()
        deadline = time.time() + timeout
        while job.state == "running" and time.time() < deadline:
            time.sleep(0.05)  # the watcher thread records the end
        return job.to_json()

    @staticmethod
    def _signal(job: _Job, sig: int) -> None:
        try:
            os.killpg(job.process.pid, sig)  # the job's own process group (start_new_session)
        except ProcessLookupError:
            pass

    def shutdown(self) -> None:
        """Stop a running job when the app stops (its partial run is removed)."""
        if self._job is not None and self._job.state == "running":
            self.cancel()
