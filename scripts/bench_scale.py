"""Scale run: record a synthetic training run whose R has >= 10^10 cells, fold it out of core, then query it.

Random data (content does not matter for speed): N examples of F features, a Linear(F, U) -> ReLU -> Linear(U, C)
classifier, the first layer's F*U weights tracked per weight (defaults: 100,000 examples x 100,000 weights =
10^10 cells). Reports fit time, journal size, lazy query latency (R of single weights straight from the journal,
and their most responsible examples) and the peak resident memory of the process (ru_maxrss), which includes the
data set itself. ``--fold`` also folds all of R out of core within ``--fold-budget-mb`` (80 GB of float32 R at the
default size: check the free disk first).

    python scripts/bench_scale.py --out docs/bench/scale.json
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from responsibility.callbacks import ResponsibilityCallback
from torch.utils.data import DataLoader, TensorDataset

from responsibility import ResponsibilityStore
from responsibility.experiments.trainers import quiet_trainer


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Classifier(L.LightningModule):
    def __init__(self, features: int, units: int, classes: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(features, units), torch.nn.ReLU(), torch.nn.Linear(units, classes)
        )

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=1_000)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--fold", action="store_true", help="fold the whole R (needs 8 bytes per cell of disk)")
    parser.add_argument("--fold-budget-mb", type=float, default=1024)
    parser.add_argument("--store", default="outputs/bench_scale/store.zarr", help="under outputs/: /tmp is slow here")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    store_path = Path(args.store)
    shutil.rmtree(store_path, ignore_errors=True)
    L.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.examples, args.features, generator=g)
    y = torch.randint(0, args.classes, (args.examples,), generator=g)
    model = Classifier(args.features, args.units, args.classes)
    cb = ResponsibilityCallback(store_path, layers=["net.0.weight"], fold="never", topk=10)
    trainer = quiet_trainer(args.epochs, [cb])
    start = time.perf_counter()
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=args.batch_size, shuffle=True))
    fit_s = time.perf_counter() - start
    rss_fit = peak_rss_gib()
    journal_bytes = disk_bytes(store_path)

    store = ResponsibilityStore.open(store_path, mode="r+")
    units = store.param("net.0.weight").units
    cells = store.num_examples * units
    rng = np.random.default_rng(0)
    # Lazy queries: one weight's R over all examples needs only its journal column and the batch membership.
    lat = []
    for _ in range(5):
        t = time.perf_counter()
        ids, values = store.most_responsible("net.0.weight", 10, weights=[int(rng.integers(0, units))])
        lat.append(time.perf_counter() - t)
    rss_query = peak_rss_gib()
    fold: dict = {}
    if args.fold:
        report = store.fold(budget_bytes=int(args.fold_budget_mb * 2**20))
        fold = {
            "fold_seconds": report.seconds,
            "fold_cells_per_second": report.cells_per_second,
            "store_bytes_after_fold": disk_bytes(store_path),
            "peak_rss_gib_after_fold": peak_rss_gib(),
        }
    results = {
        "examples": store.num_examples,
        "tracked_weights": units,
        "r_cells": cells,
        "steps": store.steps,
        "fit_seconds": fit_s,
        "journal_bytes": journal_bytes,
        "lazy_top10_of_one_weight_seconds_p50": float(np.median(lat)),
        "last_top_ids": ids[:, 0].tolist(),
        "peak_rss_gib_after_fit": rss_fit,
        "peak_rss_gib_after_queries": rss_query,
        **fold,
    }
    for key, value in results.items():
        print(f"{key:<28} {value:.6g}" if isinstance(value, float) else f"{key:<28} {value}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
