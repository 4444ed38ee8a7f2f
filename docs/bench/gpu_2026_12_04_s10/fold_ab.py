"""store.fold() on DEVICE of issue 12's store (bench_fold's, 10,000 x 1,562, 1 epoch): one process per tree, run by
dev9.sh alternately; prints fold seconds. Usage: fold_ab.py DEVICE REPS WORKDIR"""

import shutil
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, "scripts")
import bench_fold as bf

from responsibility import ResponsibilityStore

device = torch.device(sys.argv[1])
reps = int(sys.argv[2])
work = Path(sys.argv[3])
work.mkdir(parents=True, exist_ok=True)
n, p = 10_000, 1_562
ids, counts = bf.membership(n, 64, 1, 0)
base = work / "base.zarr"
if not base.exists():
    bf.build_store(base, n, p, bf.journal_rows(len(counts), p, 0.1, 0), ids, counts)
secs = []
for _r in range(reps + 1):
    w = work / "w.zarr"
    shutil.rmtree(w, ignore_errors=True)
    shutil.copytree(base, w)
    rep = ResponsibilityStore.open(w, "r+").fold(device=device)
    secs.append(rep.seconds)
secs = secs[1:]  # the first fold compiles the kernels
listed = ", ".join(f"{s * 1e3:.0f}" for s in secs)
tree = __import__("responsibility").__file__
print(f"{tree}: fold median {statistics.median(secs) * 1e3:.0f} ms ({listed}); R {rep.r_bytes / 1e6:.0f} MB")
