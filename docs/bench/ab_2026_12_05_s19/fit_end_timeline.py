"""When each piece of the callback defaults' fit end starts and ends, in ms after the last step's ``record_step``,
and on which thread; plus every zarr array write of the fit, summed per array. Paper CNN, 10,000 Fashion-MNIST
images, batch 64, 1 epoch, SGD; neurons everywhere, fc2 per weight, every other option at its default.

    python fit_end_timeline.py FITS
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import bench_overhead as bo  # noqa: E402
import zarr  # noqa: E402
from responsibility.callbacks import ResponsibilityCallback  # noqa: E402

import responsibility.recording.recorder as rec  # noqa: E402
import responsibility.recording.session as ses  # noqa: E402
import responsibility.store._fold as fo  # noqa: E402
import responsibility.store._running as running  # noqa: E402
from responsibility.experiments.datasets import build_dataset, load_fashion_mnist  # noqa: E402
from responsibility.store._facade import ResponsibilityStore  # noqa: E402

events: list[tuple[str, float, float, str]] = []
writes: list[tuple[str, float, int]] = []


def wrap(owner: object, name: str, label: str) -> None:
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            events.append((label, start, time.perf_counter(), threading.current_thread().name[:14]))

    setattr(owner, name, timed)


SETITEM = zarr.Array.__setitem__


def setitem(self, selection, value):
    start = time.perf_counter()
    try:
        return SETITEM(self, selection, value)
    finally:
        path = self.path.split("/g")[0] if self.path.startswith("fold/") else self.path
        writes.append((path, time.perf_counter() - start, getattr(value, "nbytes", 0)))


def main() -> None:
    wrap(ses.RecordingSession, "record_step", "record_step")
    wrap(rec.Recorder, "close", "recorder.close")
    wrap(ses, "fold_at_end", "fold_at_end")
    wrap(ResponsibilityStore, "write_journal", "write_journal")
    wrap(running.RunningSums, "add", "sums.add")
    wrap(fo, "_create_generations", "create generations")
    wrap(fo, "_host_topk", "topk")
    wrap(fo, "_write_block", "write R block")
    wrap(fo, "_commit", "fold commit")
    zarr.Array.__setitem__ = setitem
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, bo.FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    tmp = tempfile.mkdtemp()
    print(f"stores in {tmp}")
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    for i in range(int(sys.argv[1])):
        events.clear()
        writes.clear()
        base, _ = bo.fit_once(data, net, args, 1, None, i)
        cb = ResponsibilityCallback(f"{tmp}/{i}.zarr", granularity={"*": "neuron", "net.fc2": "weight"})
        wall, _ = bo.fit_once(data, net, args, 1, cb, i)
        end = time.perf_counter()
        last = max(b for label, _, b, _ in events if label == "record_step")
        print(
            f"fit {i}: baseline {base:.2f} s, with the callback {wall:.2f} s; fit returned {1e3 * (end - last):.0f} "
            "ms after the last step"
        )
        for label, a, b, thread in sorted(events, key=lambda e: e[1]):
            if label != "record_step":
                print(
                    f"  {label:20s} {thread:14s} {1e3 * (a - last):7.1f} .. {1e3 * (b - last):7.1f} "
                    f"({1e3 * (b - a):.1f} ms)"
                )
        per_array: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0])
        for path, seconds, nbytes in writes:
            entry = per_array[path]
            entry[0] += 1
            entry[1] += seconds
            entry[2] += nbytes
        for path, (count, seconds, nbytes) in sorted(per_array.items(), key=lambda kv: -kv[1][1]):
            print(f"  zarr writes {path:30s} {count:2d} calls {1e3 * seconds:6.1f} ms {nbytes / 1e6:6.1f} MB")


if __name__ == "__main__":
    main()
