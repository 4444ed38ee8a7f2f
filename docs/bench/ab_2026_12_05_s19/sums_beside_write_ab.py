"""A journal block's running sums added on a thread of their own beside its journal write ("beside") against after
it on the writer thread ("after": the recorder's sums executor removed), alternating within each repeat, each fit
over the repeat's own baseline; also the wall time of ``Recorder.close`` (the fit end's wait for the writer).

    python sums_beside_write_ab.py REPEATS EPOCHS [EPOCHS ...]

Callback defaults' setting: neurons everywhere, fc2 per weight, every other option at its default (R summed while
recording, folded at fit end). Paper CNN, 10,000 Fashion-MNIST images, batch 64, SGD.
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
from responsibility.recording.recorder import Recorder  # noqa: E402

INIT, CLOSE = Recorder.__init__, Recorder.close
variant = "beside"
closes: list[float] = []


def init(self, *args, **kwargs):
    INIT(self, *args, **kwargs)
    if variant == "after" and self._sums_executor is not None:
        self._sums_executor.shutdown()
        self._sums_executor = None  # _write_unguarded then adds the sums after the commit, on the writer thread


def close(self):
    start = time.perf_counter()
    try:
        CLOSE(self)
    finally:
        closes.append(time.perf_counter() - start)


def main() -> None:
    global variant
    repeats = int(sys.argv[1])
    epochs_list = [int(e) for e in sys.argv[2:]]
    Recorder.__init__, Recorder.close = init, close
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, bo.FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    work = Path("outputs/bench/sums_beside")
    work.mkdir(parents=True, exist_ok=True)
    ratios: dict[tuple[int, str], list[float]] = {}
    waits: dict[tuple[int, str], list[float]] = {}
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    for r in range(repeats):
        for epochs in epochs_list:
            base, _ = bo.fit_once(data, net, args, epochs, None, r)
            line = [f"{epochs} epoch(s): baseline {base:.2f} s"]
            for variant in ("after", "beside") if r % 2 == 0 else ("beside", "after"):
                path = work / "ab.zarr"
                shutil.rmtree(path, ignore_errors=True)
                cb = ResponsibilityCallback(path, granularity={"*": "neuron", "net.fc2": "weight"})
                wall, _ = bo.fit_once(data, net, args, epochs, cb, r)
                ratios.setdefault((epochs, variant), []).append(wall / base)
                waits.setdefault((epochs, variant), []).append(closes[-1])
                line.append(f"{variant} {wall / base:.2f}x (close {1e3 * closes[-1]:.0f} ms)")
            print(f"repeat {r}: " + ", ".join(line), flush=True)
    for epochs in epochs_list:
        after, beside = ratios[(epochs, "after")], ratios[(epochs, "beside")]
        wins = sum(b < a for a, b in zip(after, beside, strict=True))
        print(
            f"{epochs} epoch(s): after median {statistics.median(after):.2f}x {[round(x, 2) for x in after]}, close "
            f"{1e3 * statistics.median(waits[(epochs, 'after')]):.0f} ms; beside median "
            f"{statistics.median(beside):.2f}x {[round(x, 2) for x in beside]}, close "
            f"{1e3 * statistics.median(waits[(epochs, 'beside')]):.0f} ms; beside faster in {wins} of {len(after)}"
        )


if __name__ == "__main__":
    main()
