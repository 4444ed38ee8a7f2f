"""store.fold() from the journal, R's bytes on disk and a read of fc2's R: ``python fold_ab.py STORE TAG``."""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import responsibility
from responsibility import ResponsibilityStore

base, tag = sys.argv[1], sys.argv[2]
out = []
for _ in range(int(os.environ.get("FOLDS", 5))):
    work = f"/work/ab_s11/w_{tag}.zarr"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    store = ResponsibilityStore.open(work, "r+")
    t = time.perf_counter()
    report = store.fold()
    seconds = time.perf_counter() - t
    r_files = [f for f in Path(work, "fold").rglob("*") if f.is_file() and ("/pos/" in str(f) or "/neg/" in str(f))]
    t = time.perf_counter()
    ResponsibilityStore.open(work, "r").read("net.fc2.weight", "pos")
    read = time.perf_counter() - t
    out.append(
        {
            "fold": seconds,
            "topk": report.topk_seconds,
            "r_disk": sum(f.stat().st_size for f in r_files),
            "read_fc2": read,
        }
    )
print(json.dumps({"tag": tag, "src": responsibility.__file__, "runs": out}))
