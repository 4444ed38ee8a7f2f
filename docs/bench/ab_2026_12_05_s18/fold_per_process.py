"""``store.fold()``, one per process, as ``responsibility fold`` runs it.

    python fold_per_process.py build DIR          # issue 12's synthetic store: 10,000 x 1,562, one epoch, top-k 10
    python fold_per_process.py fold DIR huge      # a fresh copy folded; accumulators from huge pages (the library)
    python fold_per_process.py fold DIR zeros     # ... from torch.zeros

Prints the variant, the fold's own seconds (``FoldReport.seconds``) and the wall time of open + fold, in ms.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))


def build(directory: Path) -> None:
    import bench_fold

    ids, counts = bench_fold.membership(10_000, 64, 1, 0)
    rows = bench_fold.journal_rows(len(counts), 1562, 0.3, 0)
    bench_fold.build_store(directory / "src.zarr", 10_000, 1562, rows, ids, counts)


def fold(directory: Path, variant: str) -> None:
    import responsibility.store._fold as fold_module
    from responsibility import ResponsibilityStore

    if variant == "zeros":
        fold_module.zeros = lambda rows, cols, device=None: torch.zeros(rows, cols, device=device)
    work = directory / f"f_{variant}.zarr"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(directory / "src.zarr", work)
    start = time.perf_counter()
    report = ResponsibilityStore.open(work, mode="r+").fold()
    print(f"{variant} {1e3 * report.seconds:.0f} {1e3 * (time.perf_counter() - start):.0f}")


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(Path(sys.argv[2]))
    else:
        fold(Path(sys.argv[2]), sys.argv[3])
