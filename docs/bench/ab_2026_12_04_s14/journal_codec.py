"""The journal's float data with the default codec (Blosc LZ4 level 1, unshuffled, + CRC32C) against none (CRC32C
only): ``trainer.fit`` ratios to a baseline fit in the same round, alternating. Paper CNN, 10,000 Fashion-MNIST
images, batch 64, one epoch, SGD, ``fold="never"``.

    python docs/bench/ab_2026_12_04_s14/journal_codec.py --data-dir ../shared/data/fashion-mnist --repeats 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from responsibility.callbacks import ResponsibilityCallback

from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead as bo  # noqa: E402

SETTINGS = {
    "every_weight_uniform": dict(granularity="weight", attribution="uniform"),
    "every_weight_per_example": dict(granularity="weight", attribution="per_example"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(a.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    runs = {f"{s} {c}": {"fold": "never", **kw, "codec": c} for s, kw in SETTINGS.items() for c in ("lz4", "none")}
    work = Path(tempfile.mkdtemp(prefix="journal_codec_", dir="."))
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in ["baseline", *runs]}
    for r in range(a.repeats):
        times["baseline"].append(bo.fit_once(data, net, args, 1, None, r)[0])
        for name, kw in runs.items() if r % 2 == 0 else reversed(list(runs.items())):
            path = work / f"{name.replace(' ', '_')}.zarr"
            shutil.rmtree(path, ignore_errors=True)
            times[name].append(bo.fit_once(data, net, args, 1, ResponsibilityCallback(path, **kw), r)[0])
        print(r, {k: round(v[-1], 2) for k, v in times.items()}, flush=True)
    for name in runs:
        ratios = [t / b for t, b in zip(times[name], times["baseline"], strict=True)]
        size = sum(f.stat().st_size for f in (work / f"{name.replace(' ', '_')}.zarr").rglob("*") if f.is_file())
        print(f"{name:<32} median {statistics.median(ratios):.3f} {[round(x, 2) for x in ratios]}  {size / 1e6:.0f} MB")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
