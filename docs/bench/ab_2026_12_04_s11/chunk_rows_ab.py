"""Callback defaults with smaller journal buffers (so smaller chunk rows): ``MB="256 8 3" python chunk_rows_ab.py``.

Runs from the repository root's scripts/ (bench_overhead's model and fit); fit ratios to the same round's baseline.
"""

import argparse
import os
import shutil
import statistics
import sys

sys.path.insert(0, "scripts")
import bench_overhead as bo  # noqa: E402

from responsibility import ResponsibilityCallback  # noqa: E402
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist  # noqa: E402

args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
images, labels = load_fashion_mnist(os.environ.get("FASHION_MNIST_DIR", "../shared/data/fashion-mnist"), "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10000, seed=0)
net, settings = bo.MODELS["paper_cnn"]
kwargs = {k: v for k, v in settings["b_defaults"].items() if v is not None}
buffers = [float(x) for x in os.environ.get("MB", "256 8 3").split()]
bo.fit_once(data, net, args, 1, None, 0)  # warm-up
fits: dict[str, list[float]] = {"base": []}
for r in range(int(os.environ.get("REPS", 4))):
    fits["base"].append(bo.fit_once(data, net, args, 1, None, r)[0])
    for mb in buffers:
        shutil.rmtree("outputs/bench/chunk_rows.zarr", ignore_errors=True)
        callback = ResponsibilityCallback("outputs/bench/chunk_rows.zarr", journal_buffer_mb=mb, **kwargs)
        fits.setdefault(str(mb), []).append(bo.fit_once(data, net, args, 1, callback, r)[0])
    print(r, {k: round(v[-1], 2) for k, v in fits.items()}, flush=True)
for mb in buffers:
    ratios = [x / b for x, b in zip(fits[str(mb)], fits["base"], strict=True)]
    print(mb, "MB: median ratio", round(statistics.median(ratios), 2))
