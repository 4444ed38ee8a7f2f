"""``trainer.fit`` with the callback defaults (paper CNN, 10,000 Fashion-MNIST images, 1 epoch) with the running
sums' and the fold's buffers from ``torch.zeros`` and from huge pages (``responsibility.store._memory.zeros``),
each over its own baseline fit, alternating within every repeat (one process). Run at 309e917, whose running
sums took ``_running.zeros``; the running sums have used ``torch.zeros`` again since (the result below).

    python docs/bench/ab_2026_12_05_s15/zeros_fit.py --data-dir ../shared/data/fashion-mnist --repeats 8 [--huge-first]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from responsibility.callbacks import ResponsibilityCallback

import responsibility.store._fold as fold
import responsibility.store._running as running
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead  # noqa: E402


def plain(rows: int, cols: int, device: torch.device | None = None) -> torch.Tensor:
    return torch.zeros(rows, cols, device=device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--huge-first", action="store_true", help="huge pages first in every repeat")
    a = ap.parse_args()
    variants = {"torch.zeros": plain, "huge pages": running.zeros}
    if a.huge_first:
        variants = dict(reversed(variants.items()))
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(a.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bench_overhead.MODELS["paper_cnn"][0]
    bench_overhead.fit_once(data, net, args, 1, None, 0)  # warm-up
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    folds: dict[str, list[float]] = {name: [] for name in variants}
    store = Path(tempfile.mkdtemp()) / "z.zarr"
    for r in range(a.repeats):
        for name, make in variants.items():
            fold.zeros = running.zeros = make
            base, _ = bench_overhead.fit_once(data, net, args, 1, None, r)
            shutil.rmtree(store, ignore_errors=True)
            cb = ResponsibilityCallback(str(store), granularity={"*": "neuron", "net.fc2": "weight"})
            wall, _ = bench_overhead.fit_once(data, net, args, 1, cb, r)
            ratios[name].append(wall / base)
            folds[name].append(cb.fold_report.seconds if cb.fold_report else float("nan"))
        print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f}x" for k, v in ratios.items()), flush=True)
    for name in variants:
        print(
            f"{name}: fit ratio median {statistics.median(ratios[name]):.2f}x "
            f"({min(ratios[name]):.2f}-{max(ratios[name]):.2f}), fit-end fold median "
            f"{1e3 * statistics.median(folds[name]):.0f} ms"
        )
    shutil.rmtree(store.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
