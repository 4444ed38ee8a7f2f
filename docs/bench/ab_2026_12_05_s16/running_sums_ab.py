"""The running sums' work in the defaults' fit (all 157 steps are summed at the fit's end: one journal chunk row per
epoch), old ``shares`` (always adds the evenly split part) against new, alternating fits in one process. Prints
the ms of ``RunningSums.add`` and of fc2's per-example accumulation in it.

    python docs/bench/ab_2026_12_05_s16/running_sums_ab.py --data-dir ../shared/data/fashion-mnist --fits 8
"""

import argparse
import collections
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead
import torch
from responsibility.callbacks import ResponsibilityCallback

import responsibility.store._accumulate as acc_mod
import responsibility.store._running as running
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist


def old_shares(delta, grads, row_of_id, counts, rule):
    weight = grads.abs() if rule == "magnitude" else grads
    denom = torch.zeros_like(delta).index_add_(0, row_of_id, weight)
    scale = delta / denom
    usable = torch.isfinite(scale)
    scale = torch.where(usable, scale, torch.zeros((), dtype=scale.dtype))
    even = torch.where(usable, torch.zeros((), dtype=delta.dtype), delta / counts.to(delta.dtype).unsqueeze(1))
    return scale[row_of_id].mul_(weight).add_(even[row_of_id])


NEW = acc_mod.shares
spent = collections.defaultdict(float)
real_acc, real_add = running.accumulate, running.RunningSums.add


def acc(block, p, *a, **k):
    t = time.perf_counter()
    try:
        return real_acc(block, p, *a, **k)
    finally:
        spent[p.name] += time.perf_counter() - t


def add(self, *a, **k):
    t = time.perf_counter()
    try:
        return real_add(self, *a, **k)
    finally:
        spent["add"] += time.perf_counter() - t


running.accumulate, running.RunningSums.add = acc, add
parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", default="../shared/data/fashion-mnist")
parser.add_argument("--fits", type=int, default=8)
opts = parser.parse_args()
args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
images, labels = load_fashion_mnist(opts.data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
net = bench_overhead.MODELS["paper_cnn"][0]
store = Path(tempfile.mkdtemp()) / "t.zarr"
res = {"old": [], "new": []}
for r in range(opts.fits):
    for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
        acc_mod.shares = old_shares if name == "old" else NEW
        shutil.rmtree(store, ignore_errors=True)
        spent.clear()
        cb = ResponsibilityCallback(str(store), granularity={"*": "neuron", "net.fc2": "weight"})
        bench_overhead.fit_once(data, net, args, 1, cb, r)
        res[name].append((spent["add"], spent["net.fc2.weight"]))
        print(
            f"{name}: add {1e3 * spent['add']:.0f} ms, fc2 weights {1e3 * spent['net.fc2.weight']:.0f} ms", flush=True
        )
for name, rows in res.items():
    print(
        f"{name} median: add {1e3 * statistics.median(a for a, _ in rows):.0f} ms, "
        f"fc2 weights {1e3 * statistics.median(b for _, b in rows):.0f} ms"
    )
shutil.rmtree(store.parent, ignore_errors=True)
