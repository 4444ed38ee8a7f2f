"""store.fold(sums=...) of an unfolded store, the fit-end path: ``python fitend_ab.py STORE TAG`` (one JSON line)."""

import json
import os
import shutil
import sys
import time

import responsibility
from responsibility import ResponsibilityStore
from responsibility.store._running import RunningSums

base, tag = sys.argv[1], sys.argv[2]
src = ResponsibilityStore.open(base, "r")
rows, ids, steps = src.journal_rows(0, src.steps)
sums = RunningSums(src._state)
sums.start = sums.stop = 0
sums.add(0, rows, ids, 0, steps, src.journal_examples(0, src.steps))
out = []
for _ in range(int(os.environ.get("FOLDS", 6))):
    work = f"/work/ab_s11/f_{tag}.zarr"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    store = ResponsibilityStore.open(work, "r+")
    fresh = RunningSums(store._state)
    fresh.start, fresh.stop = 0, store.steps
    fresh.sums = {k: (a.clone(), b.clone()) for k, (a, b) in sums.sums.items()}
    t = time.perf_counter()
    report = store.fold(sums=fresh)
    out.append({"fold": time.perf_counter() - t, "topk": report.topk_seconds})
print(json.dumps({"tag": tag, "src": responsibility.__file__, "runs": out}))
