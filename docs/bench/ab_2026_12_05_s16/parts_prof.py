"""Wall ms per piece of the per-step recording, summed over one fit of the callback defaults' setting (neurons
everywhere, fc2 per weight, attribution 'auto'), ``fold="never"``: paper CNN, 10,000 images, 1 epoch, SGD.

    python docs/bench/ab_2026_12_05_s16/parts_prof.py --data-dir ../shared/data/fashion-mnist --fits 3
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

import responsibility.recording.attribution as att
import responsibility.recording.per_example as pe
import responsibility.recording.recorder as rec
import responsibility.recording.session as ses
import responsibility.recording.unit_shares as us
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

spent = collections.defaultdict(float)


def wrap(obj, name, label):
    inner = getattr(obj, name)

    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            spent[label] += time.perf_counter() - t

    setattr(obj, name, timed)


wrap(ses.RecordingSession, "record_step", "session.record_step")
wrap(att, "unit_shares", "  unit_shares")
wrap(us, "_outer_sums", "    the product with the inputs (_outer_sums)")
wrap(us, "_ratios", "    ratios (_ratios)")
wrap(rec.Recorder, "weight_change", "  weight_change")
wrap(rec.Recorder, "record_step", "  recorder.record_step")
wrap(rec.Recorder, "_write_delta", "    _write_delta (per-unit sums of Δw)")
wrap(rec._Buffer, "put_examples", "    put_examples")
wrap(pe.ExampleGradients, "take", "take (captured rows)")
wrap(rec.Recorder, "snapshot", "snapshot")
wrap(rec.Recorder, "_write_unguarded", "writer thread: journal write")
wrap(pe.ExampleGradients, "_backward", "capture: backward hook")
wrap(pe.ExampleGradients, "_forward", "capture: forward hook")
wrap(pe.ExampleGradients, "_weight_grad", "capture: weight-gradient hook")

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", default="../shared/data/fashion-mnist")
parser.add_argument("--fits", type=int, default=3)
opts = parser.parse_args()
args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
images, labels = load_fashion_mnist(opts.data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
net = bench_overhead.MODELS["paper_cnn"][0]
bench_overhead.fit_once(data, net, args, 1, None, 0)
store = Path(tempfile.mkdtemp()) / "h.zarr"
for r in range(opts.fits):
    shutil.rmtree(store, ignore_errors=True)
    spent.clear()
    wb, _ = bench_overhead.fit_once(data, net, args, 1, None, r)
    cb = ResponsibilityCallback(str(store), granularity={"*": "neuron", "net.fc2": "weight"}, fold="never")
    w, _ = bench_overhead.fit_once(data, net, args, 1, cb, r)
    print(f"fit {r}: baseline {wb:.2f} s, with the callback {w:.2f} s ({w / wb:.2f}x); ms per fit:", flush=True)
    order = [
        "session.record_step",
        "  unit_shares",
        "    the product with the inputs (_outer_sums)",
        "    ratios (_ratios)",
        "  weight_change",
        "  recorder.record_step",
        "    _write_delta (per-unit sums of Δw)",
        "    put_examples",
        "take (captured rows)",
        "snapshot",
        "capture: backward hook",
        "capture: forward hook",
        "capture: weight-gradient hook",
        "writer thread: journal write",
    ]
    for label in order:
        print(f"  {label:48s} {1e3 * spent[label]:6.0f}")
shutil.rmtree(store.parent, ignore_errors=True)
