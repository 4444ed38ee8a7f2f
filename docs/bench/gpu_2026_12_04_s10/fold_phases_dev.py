"""store.fold() phases on DEVICE (issue 12's store from bench_fold, 10,000 x 1,562, 1 epoch), with writer variants:
  current: as the library does; two: pos and neg written by two threads at once; conc32: zarr async.concurrency 32.
Usage: fold_phases_dev.py DEVICE REPS WORKDIR"""

import json
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import zarr

sys.path.insert(0, "scripts")
import bench_fold as bf

import responsibility.store._fold as F
from responsibility import ResponsibilityStore

device = torch.device(sys.argv[1])
reps = int(sys.argv[2])
work = Path(sys.argv[3])
work.mkdir(parents=True, exist_ok=True)
n, p = 10_000, 1_562
ids, counts = bf.membership(n, 64, 1, 0)
rows = bf.journal_rows(len(counts), p, 0.1, 0)
base = work / "base.zarr"
bf.build_store(base, n, p, rows, ids, counts)
T = {}


def timed(name, fn):
    def w(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            T[name] = T.get(name, 0.0) + time.perf_counter() - t

    return w


orig_block = F._write_block
pool = ThreadPoolExecutor(2)


def two_block(out, cols, stored):
    f = [pool.submit(out[s].__setitem__, (slice(None), cols), a) for s, a in zip(("pos", "neg"), stored, strict=False)]
    for x in f:
        x.result()


F._write_topk = timed("writer_topk", F._write_topk)
F._create_generations = timed("create", F._create_generations)
F.accumulate = timed("accumulate", F.accumulate)
F._to_stored = timed("to_stored", F._to_stored)
F._host_topk = timed("topk", F._host_topk)
res = {}
for _r in range(reps):
    for v in ("current", "two", "conc32"):
        F._write_block = timed("writer_block", two_block if v == "two" else orig_block)
        w = work / "w.zarr"
        shutil.rmtree(w, ignore_errors=True)
        shutil.copytree(base, w)
        st = ResponsibilityStore.open(w, "r+")
        T.clear()
        with zarr.config.set({"async.concurrency": 32 if v == "conc32" else zarr.config.get("async.concurrency")}):
            t = time.perf_counter()
            rep = st.fold(device=device)
            T["fold"] = time.perf_counter() - t
        res.setdefault(v, []).append(dict(T))
seq = [bf.sequential_write(work, rep.r_bytes) for _ in range(3)]
print(f"sequential write of {rep.r_bytes / 1e6:.0f} MB: {', '.join(f'{s * 1e3:.0f}' for s in seq)} ms")
for v, runs in res.items():
    keys = runs[0].keys()
    print(
        v,
        "; ".join(f"{k} {statistics.median([x.get(k, 0) for x in runs[1:]]) * 1e3:.0f}" for k in keys),
        "ms (medians, first rep dropped)",
    )
json.dump({"seq": seq, "runs": res}, open(work / "fold_phases.json", "w"), indent=1)
