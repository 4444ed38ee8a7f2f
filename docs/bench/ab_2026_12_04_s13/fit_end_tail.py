"""The callback defaults' fit-end tail, phase by phase: wall ms and idle core-ms (2 x wall - process CPU) of the
recorder's ``close()`` and of the fold's steps. Paper CNN, 10,000 Fashion-MNIST images, one epoch, SGD.

    python docs/bench/ab_2026_12_04_s13/fit_end_tail.py --data-dir ../shared/data/fashion-mnist
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

import responsibility.recording.recorder as recorder
import responsibility.store._fold as fold
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead  # noqa: E402

spent: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])


def timed(owner: object, name: str, label: str) -> None:
    inner = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label][0] += time.perf_counter() - w
            spent[label][1] += time.process_time() - c

    setattr(owner, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--fits", type=int, default=4)
    a = ap.parse_args()
    timed(recorder.Recorder, "close", "1 close")
    timed(fold, "fold", "2 fold")
    timed(fold, "_create_generations", "2a create")
    timed(fold, "_host_topk", "2b rank")
    timed(fold._Writer, "wait", "2c writer.wait")
    timed(fold, "_commit", "2d commit")
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(a.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bench_overhead.MODELS["paper_cnn"][0]
    bench_overhead.fit_once(data, net, args, 1, None, 0)  # warm-up
    store = Path(tempfile.mkdtemp()) / "tail.zarr"
    for r in range(a.fits):
        shutil.rmtree(store, ignore_errors=True)
        spent.clear()
        cb = ResponsibilityCallback(str(store), granularity={"*": "neuron", "net.fc2": "weight"})
        wall, _ = bench_overhead.fit_once(data, net, args, 1, cb, r)
        parts = (f"{k} {w * 1e3:.0f} ms (idle {1e3 * (2 * w - c):.0f})" for k, (w, c) in sorted(spent.items()))
        print(f"fit {wall:.2f}: " + "; ".join(parts), flush=True)
    shutil.rmtree(store.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
