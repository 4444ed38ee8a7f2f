"""The fold's ranking time (``FoldReport.topk_seconds``) with R's and the top-k index's writes as usual and with
them replaced by no-ops, on the callback defaults' journal-only store (paper CNN, 10,000 images, one epoch, neurons
everywhere and fc2 per weight; make it with ``fold="never"``). 7 folds of a fresh copy each, the first dropped.

    python docs/bench/ab_2026_12_04_s14/fold_rank_contention.py STORE write
    python docs/bench/ab_2026_12_04_s14/fold_rank_contention.py STORE nowrite
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from responsibility import ResponsibilityStore
from responsibility.store import _fold


def main() -> None:
    source, mode = sys.argv[1], sys.argv[2]
    if mode == "nowrite":
        _fold._write_block = lambda out, cols, stored: None
        _fold._write_topk = lambda out, cols, top: None
    rows = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for _ in range(7):
            copy = Path(tmp) / "f.zarr"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(source, copy)
            report = ResponsibilityStore.open(copy, mode="r+").fold()
            rows.append((report.seconds, report.topk_seconds))
    rows = rows[1:]
    fold_ms = round(1e3 * statistics.median(r[0] for r in rows))
    rank_ms = round(1e3 * statistics.median(r[1] for r in rows))
    print(f"{mode}: median fold {fold_ms} ms, ranking {rank_ms} ms {[round(1e3 * r[1]) for r in rows]}")


if __name__ == "__main__":
    main()
