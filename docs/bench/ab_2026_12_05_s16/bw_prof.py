"""The per-example capture's backward hook by layer, and the conv's per-example weight gradients in it, ms summed
over a defaults fit (`fold="never"`).

    python docs/bench/ab_2026_12_05_s16/bw_prof.py --data-dir ../shared/data/fashion-mnist
"""

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead
from responsibility.callbacks import ResponsibilityCallback

import responsibility.recording.per_example as pe
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

spent = collections.defaultdict(float)
inner = pe.ExampleGradients._backward


def bw(self, module, *a):
    t = time.perf_counter()
    try:
        return inner(self, module, *a)
    finally:
        spent[type(module).__name__ + str(tuple(module.weight.shape))] += time.perf_counter() - t


pe.ExampleGradients._backward = bw
ci = pe._conv2d_weight_grads


def cw(*a):
    t = time.perf_counter()
    try:
        return ci(*a)
    finally:
        spent["conv grads"] += time.perf_counter() - t


pe._conv2d_weight_grads = cw
args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
data_dir = sys.argv[sys.argv.index("--data-dir") + 1] if "--data-dir" in sys.argv else "../shared/data/fashion-mnist"
images, labels = load_fashion_mnist(data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
net = bench_overhead.MODELS["paper_cnn"][0]
store = Path(tempfile.mkdtemp()) / "h.zarr"
for r in range(2):
    shutil.rmtree(store, ignore_errors=True)
    spent.clear()
    cb = ResponsibilityCallback(str(store), granularity={"*": "neuron", "net.fc2": "weight"}, fold="never")
    bench_overhead.fit_once(data, net, args, 1, cb, r)
    print({k: round(1e3 * v) for k, v in spent.items()})
