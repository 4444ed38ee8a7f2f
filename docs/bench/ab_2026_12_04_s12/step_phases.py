"""Per-step wall time of the per-unit shares' phases and of the recorder's Δw work, in journal-only fits of the
callback defaults (paper CNN, 10,000 Fashion-MNIST images, one epoch), by wrapping the functions.

    python docs/bench/ab_2026_12_04_s12/step_phases.py --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

from responsibility.callbacks import ResponsibilityCallback

import responsibility.recording.attribution as attribution
import responsibility.recording.recorder as recorder
import responsibility.recording.unit_shares as unit_shares
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead  # noqa: E402

seconds: collections.Counter[str] = collections.Counter()


def timed(owner: object, name: str, label: str | None = None) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[label or name] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--fits", type=int, default=3)
    args = parser.parse_args()
    for name in ("_ratios", "_outer_sums", "_pair_sum"):
        timed(unit_shares, name)
    for name in ("_write_delta", "weight_change", "snapshot"):
        timed(recorder.Recorder, name)
    timed(attribution, "unit_shares", "unit_shares (all)")
    fit_args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(args.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bench_overhead.MODELS["paper_cnn"][0]
    bench_overhead.fit_once(data, net, fit_args, 1, None, 0)  # warm-up
    work = Path(tempfile.mkdtemp(prefix="step_phases_"))
    for repeat in range(args.fits):
        seconds.clear()
        path = work / f"s{repeat}.zarr"
        cb = ResponsibilityCallback(path, granularity={"*": "neuron", "net.fc2": "weight"}, fold="never")
        wall, _ = bench_overhead.fit_once(data, net, fit_args, 1, cb, repeat)
        steps = cb.session.steps
        phases = ", ".join(f"{k} {v * 1e3 / steps:.3f}" for k, v in sorted(seconds.items()))
        print(f"fit {wall:.3f} s, {steps} steps; ms per step: {phases}", flush=True)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
