"""Where the derived journal's recording time goes: every weight per example (paper CNN, 10,000 images, batch 64,
1 epoch, SGD), timers around ``Recorder.record_step``, the check (``derived_scale``) and the gradient sums formed
from captured rows (``_gradient_sum``; fc1's and fc2's come from autograd after the first step), with
``journal_delta`` derived, stored, derived.

    python docs/bench/ab_2026_12_05_s17/check_cost.py --data-dir ../shared/data/fashion-mnist
"""

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead

import responsibility.recording.recorder as recorder_mod
from responsibility import ResponsibilityCallback
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", default="../shared/data/fashion-mnist")
opts = parser.parse_args()
seconds: collections.Counter = collections.Counter()
calls: collections.Counter = collections.Counter()


def timed(label, fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        seconds[label(*a)] += time.perf_counter() - t
        calls[label(*a)] += 1
        return out

    return wrapper


recorder_mod.derived_scale = timed(lambda *a: "derived_scale", recorder_mod.derived_scale)
recorder_mod.Recorder._gradient_sum = timed(
    lambda self, spec, *a: f"gradient_sum {spec.name}", recorder_mod.Recorder._gradient_sum
)
recorder_mod.Recorder.record_step = timed(lambda *a: "record_step", recorder_mod.Recorder.record_step)
args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
images, labels = load_fashion_mnist(opts.data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
tmp = tempfile.mkdtemp()
for run, mode in enumerate(("derived", "stored", "derived")):
    seconds.clear()
    calls.clear()
    cb = ResponsibilityCallback(
        f"{tmp}/{run}.zarr", granularity="weight", attribution="per_example", fold="never", journal_delta=mode
    )
    wall, _ = bench_overhead.fit_once(data, bench_overhead.MODELS["paper_cnn"][0], args, 1, cb, 0)
    parts = ", ".join(f"{k} {v * 1e3:.0f} ms / {calls[k]} calls" for k, v in sorted(seconds.items()))
    print(f"{mode}: fit {wall:.2f} s; {parts}", flush=True)
