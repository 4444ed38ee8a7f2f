"""Every weight, uniform, ``fold="never"``: float32 against bfloat16 journal, alternating, each over its own
baseline. Per fit: the seconds the training thread blocked in ``Recorder._wait``, and the writer thread's wall and
CPU seconds in ``Recorder._write`` (zarr encodes on its own threads, so that CPU is the writer thread's share only).

    python journal_wait.py REPEATS
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import bench_overhead as bo  # noqa: E402
from responsibility.callbacks import ResponsibilityCallback  # noqa: E402

from responsibility.experiments.datasets import build_dataset, load_fashion_mnist  # noqa: E402
from responsibility.recording import recorder  # noqa: E402

STATS: dict[str, float] = {}
_wait, _write = recorder.Recorder._wait, recorder.Recorder._write


def timed_wait(self: recorder.Recorder) -> None:
    start = time.perf_counter()
    _wait(self)
    STATS["wait"] += time.perf_counter() - start


def timed_write(self: recorder.Recorder, *args: object) -> None:
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        _write(self, *args)
    finally:
        STATS["write_wall"] += time.perf_counter() - start
        STATS["write_cpu"] += time.thread_time() - cpu


def main() -> None:
    recorder.Recorder._wait, recorder.Recorder._write = timed_wait, timed_write  # type: ignore[method-assign]
    repeats = int(sys.argv[1])
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, bo.FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    work = Path("outputs/bench/journal_wait")
    work.mkdir(parents=True, exist_ok=True)
    settings = {"float32": {}, "bfloat16": {"journal_dtype": "bfloat16"}}
    rows: dict[str, list[tuple[float, ...]]] = {name: [] for name in settings}
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    for r in range(repeats):
        base, _ = bo.fit_once(data, net, args, 1, None, r)
        for name, kw in settings.items():
            path = work / f"{name}.zarr"
            shutil.rmtree(path, ignore_errors=True)
            STATS.update(wait=0.0, write_wall=0.0, write_cpu=0.0)
            cb = ResponsibilityCallback(path, granularity="weight", attribution="uniform", fold="never", **kw)
            wall, _ = bo.fit_once(data, net, args, 1, cb, r)
            rows[name].append((wall / base, STATS["wait"], STATS["write_wall"], STATS["write_cpu"]))
        print(f"repeat {r}: baseline {base:.2f} s, " + ", ".join(f"{n} {v[-1][0]:.2f}x" for n, v in rows.items()))
    for name, values in rows.items():
        ratio, wait, wall, cpu = (statistics.median(v[i] for v in values) for i in range(4))
        print(
            f"{name}: median {ratio:.2f}x {[round(v[0], 2) for v in values]}; blocked in _wait {wait:.3f} s; "
            f"writer thread {wall:.3f} s wall, {cpu:.3f} s CPU (medians)"
        )


if __name__ == "__main__":
    main()
