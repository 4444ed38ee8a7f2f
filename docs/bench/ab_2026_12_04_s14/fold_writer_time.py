"""Where a fold's writer thread spends its time: seconds inside R's writes, the top-k index's writes, the
generations' creation and the commits (summed over the fold), beside the fold's time and its ranking seconds.
7 folds of a fresh copy of STORE (the callback defaults' journal-only store), the first dropped; medians in ms.

    python docs/bench/ab_2026_12_04_s14/fold_writer_time.py STORE
"""

from __future__ import annotations

import collections
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from responsibility import ResponsibilityStore
from responsibility.store import _fold

spent: dict[str, float] = collections.defaultdict(float)


def timed(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        t0 = time.perf_counter()
        out = f(*args)
        spent[name] += time.perf_counter() - t0
        return out

    return run


def main() -> None:
    _fold._write_block = timed("write R", _fold._write_block)
    _fold._write_topk = timed("write top-k", _fold._write_topk)
    _fold._commit = timed("commit", _fold._commit)
    _fold._create_generations = timed("create", _fold._create_generations)
    rows: dict[str, list[float]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for i in range(7):
            copy = Path(tmp) / "f.zarr"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(sys.argv[1], copy)
            spent.clear()
            report = ResponsibilityStore.open(copy, mode="r+").fold()
            if i:
                rows["fold"].append(report.seconds)
                rows["ranking"].append(report.topk_seconds)
                for name, seconds in spent.items():
                    rows[name].append(seconds)
    print({name: round(1e3 * statistics.median(v)) for name, v in rows.items()})


if __name__ == "__main__":
    main()
