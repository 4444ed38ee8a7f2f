"""What a compact per-example journal could give at most: every weight per example with the derived journal
(``fold="never"``), as recorded against the same with ``journal/examples`` not written (ids, steps and scales still
are). Paper CNN, 10,000 images, batch 64, 1 epoch, SGD lr 0.05; alternating, each over its own baseline. A
projection, not a mode: such a store could not be folded.

    python docs/bench/ab_2026_12_05_s17/examples_skipped_ab.py --data-dir ../shared/data/fashion-mnist --repeats 5
"""

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead

import responsibility.store._journal as journal_mod
from responsibility import ResponsibilityCallback
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

REAL = journal_mod.Journal.write
skip = False


def write(self, start_step, rows, ids, ids_start, steps, examples=None, scales=None):
    if not skip:
        return REAL(self, start_step, rows, ids, ids_start, steps, examples, scales)
    journal = self.zarr_arrays
    for name, block, first in (("ids", ids, ids_start), ("steps", steps, start_step), ("scales", scales, start_step)):
        arr = journal[name]
        if arr.shape[0] < first + len(block):
            arr.resize((max(first + len(block), 2 * arr.shape[0]), *arr.shape[1:]))
        arr[first : first + len(block)] = block
    return None


journal_mod.Journal.write = write
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
res: dict[str, list[float]] = {"derived": [], "examples_skipped": []}
for r in range(opts.repeats):
    wb, _ = bench_overhead.fit_once(data, net, args, 1, None, r)
    line = [f"baseline {wb:.2f}"]
    for name in ("derived", "examples_skipped") if r % 2 == 0 else ("examples_skipped", "derived"):
        skip = name == "examples_skipped"
        shutil.rmtree(tmp / "s.zarr", ignore_errors=True)
        cb = ResponsibilityCallback(
            str(tmp / "s.zarr"), granularity="weight", attribution="per_example", fold="never", journal_delta="derived"
        )
        w, _ = bench_overhead.fit_once(data, net, args, 1, cb, r)
        res[name].append(w / wb)
        line.append(f"{name} {w:.2f} ({w / wb:.2f}x)")
    print(" | ".join(line), flush=True)
print("medians: " + "; ".join(f"{k} {statistics.median(v):.2f}x" for k, v in res.items()))
shutil.rmtree(tmp, ignore_errors=True)
