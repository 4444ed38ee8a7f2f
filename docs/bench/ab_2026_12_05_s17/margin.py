"""How close plain SGD's steps come to the derived journal's bound: for every parameter and step of the paper CNN
(10,000 images, batch 64, 1 epoch, SGD lr 0.05, every weight per example), max |Δw - c·Σ_j g_j| in units of
2^-23 · max|w| (about one unit in the last place of the parameter's largest weight); the bound is 2^3 of them.

    python docs/bench/ab_2026_12_05_s17/margin.py --data-dir ../shared/data/fashion-mnist
"""

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead

import responsibility.recording.recorder as recorder_mod
from responsibility import ResponsibilityCallback
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", default="../shared/data/fashion-mnist")
parser.add_argument("--samples", type=int, default=10_000)
opts = parser.parse_args()
seen: dict[tuple, list[float]] = collections.defaultdict(list)
real = recorder_mod.derived_scale


def probe(delta, grad_sum, weight):
    c = real(delta, grad_sum, weight)
    d, g = delta.reshape(-1).float(), grad_sum.reshape(-1).float()
    cc = (d * g).sum() / (g * g).sum()
    err = float((d - cc * g).abs().max())
    ulp = float(weight.detach().abs().max()) * 2.0**-23
    seen[tuple(weight.shape)].append(err / ulp)
    return c


recorder_mod.derived_scale = probe
args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
images, labels = load_fashion_mnist(opts.data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=opts.samples, seed=0)
tmp = Path(tempfile.mkdtemp())
cb = ResponsibilityCallback(
    str(tmp / "s.zarr"), granularity="weight", attribution="per_example", fold="never", journal_delta="derived"
)
bench_overhead.fit_once(data, bench_overhead.MODELS["paper_cnn"][0], args, 1, cb, 0)
for shape, ratios in seen.items():
    ratios.sort()
    over = sum(r > 8 for r in ratios)
    print(
        f"{str(shape):<20} steps {len(ratios)}: median {ratios[len(ratios) // 2]:.2f}, max {ratios[-1]:.2f} "
        f"(units of 2^-23·max|w|); over the bound: {over}"
    )
shutil.rmtree(tmp, ignore_errors=True)
