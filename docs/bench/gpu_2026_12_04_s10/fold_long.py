"""store.fold() on DEVICE of a long run's store (10,000 examples x 1,562 columns, EPOCHS epochs of batch 64: the journal
rivals R); one process per tree, run by dev11.sh alternately. Usage: fold_long.py DEVICE REPS WORKDIR EPOCHS"""

import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, "scripts")
import bench_fold as bf

from responsibility import ResponsibilityStore

device = torch.device(sys.argv[1])
reps = int(sys.argv[2])
work = Path(sys.argv[3])
epochs = int(sys.argv[4])
work.mkdir(parents=True, exist_ok=True)
n, p = 10_000, 1_562
ids, counts = bf.membership(n, 64, epochs, 0)
base = work / "base.zarr"
if not base.exists():
    t = time.perf_counter()
    bf.build_store(base, n, p, bf.journal_rows(len(counts), p, 0.1, 0), ids, counts)
    print(f"built {len(counts)} steps in {time.perf_counter() - t:.1f} s")
secs = []
for _r in range(reps + 1):
    w = work / "w.zarr"
    shutil.rmtree(w, ignore_errors=True)
    shutil.copytree(base, w)
    rep = ResponsibilityStore.open(w, "r+").fold(device=device)
    secs.append(rep.seconds)
secs = secs[1:]
listed = ", ".join(f"{s * 1e3:.0f}" for s in secs)
tree = __import__("responsibility").__file__
print(f"{tree}: {len(counts)} steps, fold median {statistics.median(secs) * 1e3:.0f} ms ({listed})")
