"""The callback defaults' fit (neurons everywhere, fc2 per weight, fold at fit end) with the journal written in one
chunk row per epoch (the default buffer) against smaller rows written while training runs (``journal_buffer_mb``
22 and 11: rows of 53 and 27 steps): ``trainer.fit`` ratios to a baseline fit in the same round, alternating.
Paper CNN, 10,000 Fashion-MNIST images, batch 64, one epoch, SGD.

    python docs/bench/ab_2026_12_04_s14/journal_buffer.py --data-dir ../shared/data/fashion-mnist --repeats 6
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from responsibility.callbacks import ResponsibilityCallback

from responsibility import ResponsibilityStore
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead as bo  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--buffer-mb", type=float, nargs="+", default=[256, 22, 11])
    a = ap.parse_args()
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(a.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    defaults = dict(granularity={"*": "neuron", "net.fc2": "weight"})
    runs = {f"journal_buffer_mb={mb:g}": {**defaults, "journal_buffer_mb": mb} for mb in a.buffer_mb}
    work = Path(tempfile.mkdtemp(prefix="journal_buffer_", dir="."))
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in ["baseline", *runs]}
    for r in range(a.repeats):
        times["baseline"].append(bo.fit_once(data, net, args, 1, None, r)[0])
        for name, kw in runs.items() if r % 2 == 0 else reversed(list(runs.items())):
            path = work / f"{name.split('=')[1]}.zarr"
            shutil.rmtree(path, ignore_errors=True)
            times[name].append(bo.fit_once(data, net, args, 1, ResponsibilityCallback(path, **kw), r)[0])
        print(r, {k: round(v[-1], 2) for k, v in times.items()}, flush=True)
    for name in runs:
        ratios = [t / b for t, b in zip(times[name], times["baseline"], strict=True)]
        rows = ResponsibilityStore.open(work / f"{name.split('=')[1]}.zarr").layout.chunk_steps
        print(
            f"{name:<24} chunk rows of {rows:3d} steps: median {statistics.median(ratios):.3f} "
            f"{[round(x, 2) for x in ratios]}"
        )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
