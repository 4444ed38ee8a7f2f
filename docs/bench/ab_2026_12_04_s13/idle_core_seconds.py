"""Idle core-seconds of fits (2 x wall - process CPU on a 2-core machine), split where the recorder's ``close()``
begins: training, then the fit-end tail. Paper CNN, 10,000 Fashion-MNIST images, SGD.

    python docs/bench/ab_2026_12_04_s13/idle_core_seconds.py --data-dir ../shared/data/fashion-mnist \
        --settings none f32 bf16 defaults
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from responsibility.callbacks import ResponsibilityCallback

import responsibility.recording.recorder as recorder
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead  # noqa: E402

SETTINGS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "defaults": {"granularity": {"*": "neuron", "net.fc2": "weight"}},
    "journal": {"granularity": {"*": "neuron", "net.fc2": "weight"}, "fold": "never"},
    "f32": {"granularity": "weight", "attribution": "uniform", "fold": "never"},
    "bf16": {"granularity": "weight", "attribution": "uniform", "fold": "never", "journal_dtype": "bfloat16"},
}
mark: dict[str, float] = {}
_close = recorder.Recorder.close


def close(self: recorder.Recorder) -> None:
    mark["wall"], mark["cpu"] = time.perf_counter(), time.process_time()
    _close(self)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settings", nargs="+", default=["none", "f32", "bf16", "defaults"], choices=list(SETTINGS))
    a = ap.parse_args()
    recorder.Recorder.close = close  # type: ignore[method-assign]
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(a.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bench_overhead.MODELS["paper_cnn"][0]
    bench_overhead.fit_once(data, net, args, 1, None, 0)  # warm-up
    store = Path(tempfile.mkdtemp()) / "idle.zarr"
    for r in range(a.rounds):
        for name in a.settings:
            shutil.rmtree(store, ignore_errors=True)
            mark.clear()
            kwargs = SETTINGS[name]
            cb = None if kwargs is None else ResponsibilityCallback(str(store), **kwargs)
            w0, c0 = time.perf_counter(), time.process_time()
            wall, _ = bench_overhead.fit_once(data, net, args, a.epochs, cb, r)
            w1, c1 = time.perf_counter(), time.process_time()
            line = f"{name:9s} wall {wall:.2f} idle {2 * (w1 - w0) - (c1 - c0):.2f}"
            if mark:
                tw, tc = mark["wall"] - w0, mark["cpu"] - c0
                tail_w, tail_c = w1 - mark["wall"], c1 - mark["cpu"]
                line += f": training {2 * tw - tc:.2f} of {tw:.2f} s, tail {2 * tail_w - tail_c:.2f} of {tail_w:.2f} s"
            print(line, flush=True)
    shutil.rmtree(store.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
