"""Old against new in one process, alternating: the old ``shares`` (always adds the evenly split part) and the old
capture layout (a Linear's factors concatenated, then copied into the step's rows), against today's code.

``fit``: the defaults' fit (neurons everywhere, fc2 per weight, fold at fit end) over the same repeat's baseline.
``fold``: ``store.fold()`` of a fresh copy of an unfolded defaults store (made with ``fold="never"``), from its journal.

    python docs/bench/ab_2026_12_05_s16/ab_s16.py fit 10 --data-dir ../shared/data/fashion-mnist
    python docs/bench/ab_2026_12_05_s16/ab_s16.py fold 10 STORE
"""

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead
import torch
from responsibility.callbacks import ResponsibilityCallback

import responsibility.recording.per_example as pe
import responsibility.store._accumulate as acc_mod
from responsibility import ResponsibilityStore
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist


def old_shares(delta, grads, row_of_id, counts, rule):
    weight = grads.abs() if rule == "magnitude" else grads
    denom = torch.zeros_like(delta).index_add_(0, row_of_id, weight)
    scale = delta / denom
    usable = torch.isfinite(scale)
    scale = torch.where(usable, scale, torch.zeros((), dtype=scale.dtype))
    even = torch.where(usable, torch.zeros((), dtype=delta.dtype), delta / counts.to(delta.dtype).unsqueeze(1))
    return scale[row_of_id].mul_(weight).add_(even[row_of_id])


def old_put(self, spec, factors, rows):
    if len(factors) == 1:
        rows.copy_(factors[0].reshape(len(factors[0]), -1))
        return
    delta, x = factors
    if self._forms[spec.name] == "outer":
        rows.copy_(torch.cat([delta, x], 1))
        return
    d = delta.reshape(len(delta), -1, delta.shape[-1])
    a = x.reshape(len(x), -1, x.shape[-1])
    rows.copy_(torch.bmm(d.transpose(1, 2), a).reshape(len(delta), -1))


NEW = (acc_mod.shares, pe.ExampleGradients._put)
OLD = (old_shares, old_put)


def use(impl):
    acc_mod.shares, pe.ExampleGradients._put = impl


mode, reps = sys.argv[1], int(sys.argv[2])
res = {"old": [], "new": []}
tmp = Path(tempfile.mkdtemp())
if mode == "fit":
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    data_dir = (
        sys.argv[sys.argv.index("--data-dir") + 1] if "--data-dir" in sys.argv else "../shared/data/fashion-mnist"
    )
    images, labels = load_fashion_mnist(data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bench_overhead.MODELS["paper_cnn"][0]
    bench_overhead.fit_once(data, net, args, 1, None, 0)
    for r in range(reps):
        wb, _ = bench_overhead.fit_once(data, net, args, 1, None, r)
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        line = [f"base {wb:.2f}"]
        for name in order:
            use(OLD if name == "old" else NEW)
            shutil.rmtree(tmp / "s.zarr", ignore_errors=True)
            cb = ResponsibilityCallback(str(tmp / "s.zarr"), granularity={"*": "neuron", "net.fc2": "weight"})
            w, _ = bench_overhead.fit_once(data, net, args, 1, cb, r)
            res[name].append(w / wb)
            line.append(f"{name} {w:.2f} ({w / wb:.2f}x)")
        print(" | ".join(line), flush=True)
    print("median ratio: " + "; ".join(f"{k} {statistics.median(v):.2f}x" for k, v in res.items()))
else:
    source = sys.argv[3]
    for r in range(reps):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for name in order:
            use(OLD if name == "old" else NEW)
            copy = tmp / "f.zarr"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(source, copy)
            rep = ResponsibilityStore.open(copy, mode="r+").fold()
            res[name].append(rep.seconds)
    print(
        "fold median: "
        + "; ".join(f"{k} {1e3 * statistics.median(v):.0f} ms {[round(1e3 * x) for x in v]}" for k, v in res.items())
    )
shutil.rmtree(tmp)
