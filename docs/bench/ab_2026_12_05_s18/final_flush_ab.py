"""The fit's last journal write (``Recorder.close`` -> ``flush(wait=True)``) on the training thread, with torch's
whole team, against on the writer thread, which has one torch thread: the callback defaults (fit-end fold from the
running sums), 1 epoch, alternating within each repeat, each fit over the repeat's own baseline. Prints the fit
ratios and the wall time of ``Recorder.close`` (the last row's write and its running sums).

    python final_flush_ab.py REPEATS
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

INLINE = {"on": True}
CLOSE: list[float] = []
_submit = recorder.Recorder._submit


def submit(self: recorder.Recorder, buf: object, inline: bool = False) -> None:
    _submit(self, buf, inline=inline and INLINE["on"])


def close(self: recorder.Recorder) -> None:
    start = time.perf_counter()
    try:
        recorder_close(self)
    finally:
        CLOSE.append(time.perf_counter() - start)


recorder_close = recorder.Recorder.close


def main() -> None:
    recorder.Recorder._submit = submit  # type: ignore[method-assign]
    recorder.Recorder.close = close  # type: ignore[method-assign]
    repeats = int(sys.argv[1])
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, bo.FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    work = Path("outputs/bench/final_flush")
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[tuple[float, float]]] = {"training thread": [], "writer thread": []}
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    for r in range(repeats):
        base, _ = bo.fit_once(data, net, args, 1, None, r)
        for variant in ("training thread", "writer thread") if r % 2 == 0 else ("writer thread", "training thread"):
            INLINE["on"] = variant == "training thread"
            path = work / "ab.zarr"
            shutil.rmtree(path, ignore_errors=True)
            CLOSE.clear()
            cb = ResponsibilityCallback(path, granularity={"*": "neuron", "net.fc2": "weight"})
            wall, _ = bo.fit_once(data, net, args, 1, cb, r)
            results[variant].append((wall / base, sum(CLOSE)))
        print(
            f"repeat {r}: baseline {base:.2f} s, "
            + ", ".join(f"{v}: {x[-1][0]:.2f}x, close {1e3 * x[-1][1]:.0f} ms" for v, x in results.items()),
            flush=True,
        )
    for variant, rows in results.items():
        print(
            f"{variant}: fit median {statistics.median(r[0] for r in rows):.2f}x, "
            f"close median {1e3 * statistics.median(r[1] for r in rows):.0f} ms {[round(1e3 * r[1]) for r in rows]}"
        )


if __name__ == "__main__":
    main()
