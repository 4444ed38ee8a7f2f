"""How the scripts run their work as one Hydra job.

- Lightning's log records are printed once: Lightning gives its ``lightning`` logger a console handler of its own
  at import, and the records also reach the root logger, where Hydra's handlers print them (and file them in the
  run's log); the job keeps Hydra's.
- A user error (any :class:`~responsibility.errors.ResponsibilityError`, also when Hydra's ``instantiate`` wraps it)
  ends the job with its message in a few lines on stderr and exit status 2, instead of a long traceback
  (``HYDRA_FULL_ERROR=1`` shows the traceback). The settings that fix it are given as the overrides that set them
  (``callbacks.responsibility.overwrite=true``, ``data.data_dir=<value>``): :func:`hydra_message`.
- A job that fails before writing anything of its own leaves no run directory behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig

from responsibility.errors import DatasetNotFoundError, ResponsibilityError

__all__ = ["command_line", "hydra_message", "hydra_value", "log_once", "run_job", "user_error"]

T = TypeVar("T")


def log_once(quiet_lightning: bool = False) -> None:
    """Drop the console handler Lightning adds to its ``lightning`` logger, where the root logger already prints
    (under Hydra: to the console and the run's log file). ``quiet_lightning``: Lightning's info messages are left
    out (the pipelines that retrain many models would repeat them for each)."""
    import lightning  # noqa: F401  (its import adds the handler)

    logger = logging.getLogger("lightning")
    if logging.getLogger().handlers:
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
    # Lightning's advertisement for its cloud logger, at every fit.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
    if quiet_lightning:
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def user_error(error: BaseException) -> ResponsibilityError | None:
    """The :class:`ResponsibilityError` behind ``error`` (itself, or what it was raised from), if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ResponsibilityError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def hydra_value(value: Any) -> str:
    """``value`` as the right-hand side of a Hydra override: ``true``, ``null``, ``[net.conv,net.fc2]``, ``'a b'``;
    ``...`` (a value only the user knows) as ``<value>``."""
    if value is ...:
        return "<value>"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    plain = text and all(c.isalnum() or c in "._-/*:" for c in text)
    return text if plain else "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def hydra_message(error: ResponsibilityError) -> str:
    """The error's message with the settings that fix it written as Hydra overrides of the composed config: those of
    the experiments' data module (``data.``) for a missing dataset, of the responsibility callback otherwise."""
    section = "data" if isinstance(error, DatasetNotFoundError) else "callbacks.responsibility"
    return error.render(lambda name, value: f"{section}.{name}={hydra_value(value)}")


def command_line(script: str) -> str:
    """``python scripts/<script> <the job's overrides>``: how the running job was started."""
    return f"python scripts/{script} {' '.join(HydraConfig.get().overrides.task)}".strip()


def _remove_if_unused(run_dir: Path) -> bool:
    """Remove ``run_dir`` when it holds no file but Hydra's own (``.hydra/``, the job's ``*.log``), and the folders
    above it that this leaves empty, up to the working directory (``outputs/<task>/``)."""
    if not run_dir.is_dir():
        return False
    for path in run_dir.rglob("*"):
        inside = path.relative_to(run_dir)
        if path.is_file() and inside.parts[0] != ".hydra" and not (len(inside.parts) == 1 and path.suffix == ".log"):
            return False
    shutil.rmtree(run_dir)
    cwd = Path.cwd().resolve()
    for parent in run_dir.resolve().parents:
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()
    return True


def run_job(work: Callable[[], T], *, quiet_lightning: bool = False) -> T:
    """Run ``work()`` as the body of a Hydra job (see the module docstring)."""
    log_once(quiet_lightning)
    try:
        return work()
    except Exception as error:
        cause = user_error(error)
        if cause is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        kept = "" if _remove_if_unused(run_dir) else f"\n(run directory kept: {run_dir})"
        print(f"Error: {hydra_message(cause)}{kept}", file=sys.stderr)
        raise SystemExit(2) from None
