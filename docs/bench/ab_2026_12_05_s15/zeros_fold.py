"""``store.fold()`` with its accumulators from ``torch.zeros`` and from huge-page-advised anonymous memory
(``responsibility.store._memory.zeros``), alternating in one process, a fresh copy of STORE per fold, the first
round dropped. STORE: e.g. issue 12's synthetic store without a top-k index (``scripts/bench_fold.py``'s
``journal_e1_no_topk.zarr``).

    python docs/bench/ab_2026_12_05_s15/zeros_fold.py STORE ROUNDS
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

import responsibility.store._fold as fold
from responsibility import ResponsibilityStore


def plain(rows: int, cols: int, device: torch.device | None = None) -> torch.Tensor:
    return torch.zeros(rows, cols, device=device)


def main() -> None:
    source, rounds = Path(sys.argv[1]), int(sys.argv[2])
    variants = {"torch.zeros": plain, "huge pages": fold.zeros}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(dir=source.parent) as tmp:
        for r in range(rounds):
            for name, make in variants.items():
                fold.zeros = make
                copy = Path(tmp) / "f.zarr"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(source, copy)
                report = ResponsibilityStore.open(copy, mode="r+").fold()
                if r:
                    times[name].append(1e3 * report.seconds)
    for name, ts in times.items():
        print(
            f"{name}: median {statistics.median(ts):.0f} ms, mean {statistics.mean(ts):.0f} ms, "
            f"max {max(ts):.0f} ms, {[round(t) for t in ts]}"
        )


if __name__ == "__main__":
    main()
