"""The callback defaults' fit-end fold with R's two signs written one after the other (as the library does) or
from two threads at once (measured, not kept); alternating in one process.

    python docs/bench/ab_2026_12_04_s13/fit_end_two_writers.py --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from responsibility.callbacks import ResponsibilityCallback

import responsibility.store._fold as fold
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead  # noqa: E402

pool = ThreadPoolExecutor(2)
one_after_other = fold._write_block
seconds: dict[str, list[float]] = collections.defaultdict(list)
mode = ["asis"]


def two_threads(out: Any, cols: slice, stored: list[Any]) -> None:
    pos = pool.submit(out["pos"].__setitem__, (slice(None), cols), stored[0])
    neg = pool.submit(out["neg"].__setitem__, (slice(None), cols), stored[1])
    pos.result()
    neg.result()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--pairs", type=int, default=5)
    a = ap.parse_args()
    inner = fold.fold

    def timed_fold(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            seconds[mode[0]].append(time.perf_counter() - t)

    fold.fold = timed_fold
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(a.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bench_overhead.MODELS["paper_cnn"][0]
    bench_overhead.fit_once(data, net, args, 1, None, 0)  # warm-up
    store = Path(tempfile.mkdtemp()) / "two.zarr"
    for r in range(a.pairs):
        for m in ("asis", "par") if r % 2 == 0 else ("par", "asis"):
            mode[0] = m
            fold._write_block = two_threads if m == "par" else one_after_other
            shutil.rmtree(store, ignore_errors=True)
            cb = ResponsibilityCallback(str(store), granularity={"*": "neuron", "net.fc2": "weight"})
            wall, _ = bench_overhead.fit_once(data, net, args, 1, cb, r)
            print(f"{m} fit {wall:.2f} fold {seconds[m][-1] * 1e3:.0f} ms", flush=True)
    for m in ("asis", "par"):
        print(m, f"fold median {statistics.median(seconds[m]) * 1e3:.0f} ms", [round(t * 1e3) for t in seconds[m]])
    shutil.rmtree(store.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
