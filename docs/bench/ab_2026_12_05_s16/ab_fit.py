"""Where the callback defaults' fit time goes, by switching parts off: alternating fits (baseline, then each setting),
median of (fit with the callback) / (the same repeat's baseline). Paper CNN, 10,000 images, 1 epoch, SGD, neurons
everywhere and fc2 per weight:

- ``uniform_never``: uniform attribution, no fold (the journal of Δw alone);
- ``auto_never``: attribution 'auto' (per example here), no fold;
- ``defaults``: every other setting at its default (fold at fit end from the running sums);
- ``no_running_sums``: as defaults, with a fold budget (400 MB) under which R (125 MB) is still folded at fit end but
  not summed while recording (the sums need R within a quarter of the budget), so the fold reads the journal.

Also prints each fit's CPU seconds (all threads).

    python docs/bench/ab_2026_12_05_s16/ab_fit.py --data-dir ../shared/data/fashion-mnist --repeats 5
"""

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead
from responsibility.callbacks import ResponsibilityCallback

from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

G = {"*": "neuron", "net.fc2": "weight"}
SETTINGS = {
    "uniform_never": dict(granularity=G, attribution="uniform", fold="never"),
    "auto_never": dict(granularity=G, fold="never"),
    "defaults": dict(granularity=G),
    "no_running_sums": dict(granularity=G, fold_budget_mb=400),
}
parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", default="../shared/data/fashion-mnist")
parser.add_argument("--repeats", type=int, default=5)
opts = parser.parse_args()
args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
images, labels = load_fashion_mnist(opts.data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
net = bench_overhead.MODELS["paper_cnn"][0]
tmp = Path(tempfile.mkdtemp())
bench_overhead.fit_once(data, net, args, 1, None, 0)
ratios = {k: [] for k in SETTINGS}
for r in range(opts.repeats):
    wb, cb_ = bench_overhead.fit_once(data, net, args, 1, None, r)
    line = [f"baseline {wb:.2f} s (cpu {cb_:.2f})"]
    for k, kw in SETTINGS.items():
        store = tmp / f"{k}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        w, c = bench_overhead.fit_once(data, net, args, 1, ResponsibilityCallback(str(store), **kw), r)
        ratios[k].append(w / wb)
        line.append(f"{k} {w:.2f} (cpu {c:.2f})")
    print(" | ".join(line), flush=True)
print("median ratios: " + "; ".join(f"{k} {statistics.median(v):.2f}x" for k, v in ratios.items()))
shutil.rmtree(tmp, ignore_errors=True)
