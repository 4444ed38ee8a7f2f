"""The callback's defaults' setting (attribution "auto", neurons everywhere and fc2 per weight, fold at fit end)
with the stored journal against ``journal_delta="derived"``; paper CNN, 10,000 images, batch 64, 1 epoch, SGD lr
0.05; alternating, each over its own baseline, with CPU seconds.

    python docs/bench/ab_2026_12_05_s17/defaults_ab.py --data-dir ../shared/data/fashion-mnist --repeats 6
"""

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead

from responsibility import ResponsibilityCallback
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", default="../shared/data/fashion-mnist")
parser.add_argument("--repeats", type=int, default=6)
opts = parser.parse_args()
args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
images, labels = load_fashion_mnist(opts.data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
net = bench_overhead.MODELS["paper_cnn"][0]
granularity = {"*": "neuron", "net.fc2": "weight"}
tmp = Path(tempfile.mkdtemp())
bench_overhead.fit_once(data, net, args, 1, None, 0)  # warm-up
modes = ("stored", "derived")
fit: dict[str, list[float]] = {m: [] for m in modes}
cpu: dict[str, list[float]] = {m: [] for m in modes}
for r in range(opts.repeats):
    wb, cb_ = bench_overhead.fit_once(data, net, args, 1, None, r)
    line = [f"baseline {wb:.2f} s"]
    for mode in modes if r % 2 == 0 else modes[::-1]:
        shutil.rmtree(tmp / f"{mode}.zarr", ignore_errors=True)
        cb = ResponsibilityCallback(str(tmp / f"{mode}.zarr"), granularity=granularity, journal_delta=mode)
        w, c = bench_overhead.fit_once(data, net, args, 1, cb, r)
        fit[mode].append(w / wb)
        cpu[mode].append(c / cb_)
        line.append(f"{mode} {w:.2f} s ({w / wb:.2f}x, CPU {c / cb_:.2f}x)")
    print(" | ".join(line), flush=True)
print(
    "fit medians: "
    + "; ".join(f"{m} {statistics.median(fit[m]):.2f}x (CPU {statistics.median(cpu[m]):.2f}x)" for m in modes)
)
shutil.rmtree(tmp, ignore_errors=True)
