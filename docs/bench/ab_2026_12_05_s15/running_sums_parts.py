"""Where the recorder's ``close()`` adds the epoch to the running sums: wall ms of ``RunningSums.add`` and of
``accumulate`` per parameter, in fits of the callback defaults (paper CNN, 10,000 Fashion-MNIST images, 1 epoch).

    python docs/bench/ab_2026_12_05_s15/running_sums_parts.py --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from responsibility.callbacks import ResponsibilityCallback

import responsibility.store._running as running
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead  # noqa: E402

spent: dict[str, float] = collections.defaultdict(float)


def timed(inner: Any, label: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label(*args)] += time.perf_counter() - t

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--fits", type=int, default=3)
    a = ap.parse_args()
    running.accumulate = timed(running.accumulate, lambda block, p, *_: f"accumulate {p.name} ({p.example_form})")
    running.RunningSums.add = timed(running.RunningSums.add, lambda *_: "add")
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(a.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bench_overhead.MODELS["paper_cnn"][0]
    bench_overhead.fit_once(data, net, args, 1, None, 0)  # warm-up
    store = Path(tempfile.mkdtemp()) / "sums.zarr"
    for r in range(a.fits):
        shutil.rmtree(store, ignore_errors=True)
        spent.clear()
        cb = ResponsibilityCallback(str(store), granularity={"*": "neuron", "net.fc2": "weight"})
        wall, _ = bench_overhead.fit_once(data, net, args, 1, cb, r)
        print(f"fit {wall:.2f} s: " + "; ".join(f"{k} {1e3 * v:.0f} ms" for k, v in sorted(spent.items())))
    shutil.rmtree(store.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
