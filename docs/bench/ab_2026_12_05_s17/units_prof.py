"""Where the defaults' setting spends its per-example time with each journal: neurons everywhere and fc2 per
weight, attribution "auto" (per example here), ``fold="never"``; paper CNN, 10,000 images, batch 64, 1 epoch, SGD.
Wall ms summed over a fit: ``PerExample.journal_values`` (the per-unit shares, with the derived check of the
per-unit parameters inside), ``unit_shares``, the check (``derived_scale``) there and in the recorder (fc2, the
biases), ``Recorder.record_step``. Runs derived, stored, derived, stored.

    python docs/bench/ab_2026_12_05_s17/units_prof.py --data-dir ../shared/data/fashion-mnist
"""

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead

import responsibility.recording.attribution as attribution_mod
import responsibility.recording.recorder as recorder_mod
from responsibility import ResponsibilityCallback
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", default="../shared/data/fashion-mnist")
opts = parser.parse_args()
seconds: collections.Counter = collections.Counter()


def timed(label, fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        seconds[label] += time.perf_counter() - t
        return out

    return wrapper


attribution_mod.PerExample.journal_values = timed("journal_values", attribution_mod.PerExample.journal_values)
attribution_mod.unit_shares = timed("unit_shares", attribution_mod.unit_shares)
attribution_mod.derived_scale = timed("check (per-unit parameters)", attribution_mod.derived_scale)
recorder_mod.derived_scale = timed("check (in the recorder)", recorder_mod.derived_scale)
recorder_mod.Recorder.record_step = timed("record_step", recorder_mod.Recorder.record_step)
args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
images, labels = load_fashion_mnist(opts.data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
tmp = tempfile.mkdtemp()
for run, mode in enumerate(("derived", "stored", "derived", "stored")):
    seconds.clear()
    cb = ResponsibilityCallback(
        f"{tmp}/{run}.zarr", granularity={"*": "neuron", "net.fc2": "weight"}, fold="never", journal_delta=mode
    )
    wall, _ = bench_overhead.fit_once(data, bench_overhead.MODELS["paper_cnn"][0], args, 1, cb, 0)
    parts = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in sorted(seconds.items()))
    print(f"{mode}: fit {wall:.2f} s; {parts}", flush=True)
