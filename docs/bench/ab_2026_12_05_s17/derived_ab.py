"""Every weight recorded per example with plain SGD (issue 12's "per-example SGD" setting), ``fold="never"``:
the journal of Δw (``journal_delta="stored"``) against the derived journal (``"derived"``: one scale per parameter
and step where Δw = c·Σ_j g_j). Paper CNN, 10,000 images, batch 64, 1 epoch, SGD lr 0.05; alternating, each over
its own baseline. Afterwards R_pos of the parameters but fc1 is read from each journal (a lazy read sums the
journal as a fold does), timed, and the two R are compared (fc1: every 4096th weight; its whole R would not fit).

    python docs/bench/ab_2026_12_05_s17/derived_ab.py --data-dir ../shared/data/fashion-mnist --repeats 5
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead

from responsibility import ResponsibilityCallback, ResponsibilityStore
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", default="../shared/data/fashion-mnist")
parser.add_argument("--repeats", type=int, default=5)
opts = parser.parse_args()
args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
images, labels = load_fashion_mnist(opts.data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
net = bench_overhead.MODELS["paper_cnn"][0]
tmp = Path(tempfile.mkdtemp())
bench_overhead.fit_once(data, net, args, 1, None, 0)  # warm-up
modes = ("stored", "derived")
fit: dict[str, list[float]] = {m: [] for m in modes}
cpu: dict[str, list[float]] = {m: [] for m in modes}
for r in range(opts.repeats):
    wb, cb_ = bench_overhead.fit_once(data, net, args, 1, None, r)
    line = [f"baseline {wb:.2f} s"]
    for mode in modes if r % 2 == 0 else modes[::-1]:
        shutil.rmtree(tmp / f"{mode}.zarr", ignore_errors=True)
        cb = ResponsibilityCallback(
            str(tmp / f"{mode}.zarr"), granularity="weight", attribution="per_example", fold="never", journal_delta=mode
        )
        w, c = bench_overhead.fit_once(data, net, args, 1, cb, r)
        fit[mode].append(w / wb)
        cpu[mode].append(c / cb_)
        line.append(f"{mode} {w:.2f} s ({w / wb:.2f}x, CPU {c / cb_:.2f}x)")
    print(" | ".join(line), flush=True)
print(
    "fit medians: "
    + "; ".join(f"{m} {statistics.median(fit[m]):.2f}x (CPU {statistics.median(cpu[m]):.2f}x)" for m in modes)
)


def du(path: Path, sub: str) -> int:
    return sum(f.stat().st_size for f in (path / sub).rglob("*") if f.is_file())


for mode in modes:
    print(
        f"{mode}: journal/rows {du(tmp / f'{mode}.zarr', 'journal/rows') / 2**20:.1f} MiB, "
        f"journal/examples {du(tmp / f'{mode}.zarr', 'journal/examples') / 2**20:.1f} MiB"
    )
stores = {m: ResponsibilityStore.open(tmp / f"{m}.zarr", mode="r+") for m in modes}
scales = stores["derived"].journal_scales()
print(
    f"derived: {int(np.isfinite(scales).sum())} of {scales.size} parameter steps derived; "
    f"scales {float(scales.min()):.7f} .. {float(scales.max()):.7f}"
)
small = [n for n in stores["stored"].parameters if n != "net.fc1.weight"]  # fc1's R would be 55 GB
reads: dict[str, list[float]] = {m: [] for m in modes}
for r in range(3):
    for mode in modes if r % 2 == 0 else modes[::-1]:
        t = time.perf_counter()
        for name in small:
            stores[mode].read(name, "pos")  # unfolded: summed from the journal, as a fold sums it
        reads[mode].append(time.perf_counter() - t)
print(
    "R_pos of every parameter but fc1 read from the journal, median of 3: "
    + "; ".join(f"{m} {statistics.median(reads[m]):.2f} s" for m in modes)
)
for name in stores["stored"].parameters:
    cols = np.arange(0, 692_224, 4096) if name == "net.fc1.weight" else None
    a = stores["stored"].read(name, "abs", weights=cols).astype(np.float64)
    b = stores["derived"].read(name, "abs", weights=cols).astype(np.float64)
    print(
        f"{name}: max |R_abs derived - stored| / max R_abs = {np.abs(a - b).max() / np.abs(a).max():.2e}, "
        f"Σ|diff| / ΣR_abs = {np.abs(a - b).sum() / np.abs(a).sum():.2e}"
    )
shutil.rmtree(tmp, ignore_errors=True)
