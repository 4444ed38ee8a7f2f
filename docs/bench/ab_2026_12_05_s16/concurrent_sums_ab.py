"""The fit-end tail with the running sums' add run on a second thread beside the journal write ("beside") against
after it on the writer thread (today, "after"): the defaults' fit, alternating, each over its own baseline, with
the recorder's close() timed (it holds the epoch's one journal write and the sums' add). Not kept: no faster.

    python docs/bench/ab_2026_12_05_s16/concurrent_sums_ab.py 10 --data-dir ../shared/data/fashion-mnist
"""

import argparse
import collections
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead
import numpy as np
from responsibility.callbacks import ResponsibilityCallback

import responsibility.recording.recorder as rec
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

OLD = rec.Recorder._write_unguarded
pool = ThreadPoolExecutor(1)


def concurrent(self, buf, n, ids, examples):
    data = buf.data[:n].numpy()
    bad = ~np.isfinite(data).all(axis=1)
    step_of_id = np.repeat(np.arange(n), [len(a) for a in buf.ids[:n]])
    if examples is not None:
        bad[step_of_id[~np.isfinite(examples).all(axis=1)]] = True
    if bad.any():
        data[bad] = 0.0
        if examples is not None:
            examples[bad[step_of_id]] = 0.0
        buf.steps[:n][bad, 3] |= rec.FLAG_NONFINITE
    steps = buf.steps[:n]
    summing = (
        pool.submit(self.sums.add, buf.base, data, ids, buf.ids_base, steps, examples)
        if self.sums is not None
        else None
    )
    try:
        self.store.write_journal(buf.base, data, ids, buf.ids_base, steps, examples)
        self.store.commit(buf.base + n, int(steps[-1, 0]) if n else buf.ids_base)
    finally:
        if summing is not None:
            summing.result()


spent = collections.defaultdict(float)
inner = rec.Recorder.close


def close(self):
    t = time.perf_counter()
    try:
        return inner(self)
    finally:
        spent["close"] += time.perf_counter() - t


rec.Recorder.close = close

args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
data_dir = sys.argv[sys.argv.index("--data-dir") + 1] if "--data-dir" in sys.argv else "../shared/data/fashion-mnist"
images, labels = load_fashion_mnist(data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
net = bench_overhead.MODELS["paper_cnn"][0]
tmp = Path(tempfile.mkdtemp())
bench_overhead.fit_once(data, net, args, 1, None, 0)
res = {"after": [], "beside": []}
closes = {"after": [], "beside": []}
for r in range(int(sys.argv[1])):
    wb, _ = bench_overhead.fit_once(data, net, args, 1, None, r)
    line = [f"base {wb:.2f}"]
    for name in ("after", "beside") if r % 2 == 0 else ("beside", "after"):
        rec.Recorder._write_unguarded = OLD if name == "after" else concurrent
        shutil.rmtree(tmp / "s.zarr", ignore_errors=True)
        spent.clear()
        cb = ResponsibilityCallback(str(tmp / "s.zarr"), granularity={"*": "neuron", "net.fc2": "weight"})
        w, _ = bench_overhead.fit_once(data, net, args, 1, cb, r)
        res[name].append(w / wb)
        closes[name].append(spent["close"])
        line.append(f"{name} {w:.2f} ({w / wb:.2f}x, close {1e3 * spent['close']:.0f} ms)")
    print(" | ".join(line), flush=True)
for k in res:
    print(f"{k}: median {statistics.median(res[k]):.2f}x, close median {1e3 * statistics.median(closes[k]):.0f} ms")
