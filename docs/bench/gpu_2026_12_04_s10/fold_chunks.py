"""store.fold() of issue 12's store (10,000 x 1,562, 1 epoch of batch 64) with R chunks of 1,024 and 4,096
examples, alternating; and a plain sequential write of R's bytes between folds. Usage: fold_chunks.py DEVICE REPS"""

import dataclasses
import json
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
work = Path(sys.argv[3] if len(sys.argv) > 3 else "/tmp/fold_chunks")
work.mkdir(parents=True, exist_ok=True)
n, p = 10_000, 1_562
ids, counts = bf.membership(n, 64, 1, 0)
rows = bf.journal_rows(len(counts), p, 0.1, 0)
base = work / "base.zarr"
bf.build_store(base, n, p, rows, ids, counts)
res = {1024: [], 4096: [], "seq": []}
for _r in range(reps):
    for ch in (1024, 4096):
        w = work / "w.zarr"
        shutil.rmtree(w, ignore_errors=True)
        shutil.copytree(base, w)
        st = ResponsibilityStore.open(w, "r+")
        st._state.layout = dataclasses.replace(st._state.layout, r_chunk_examples=ch)
        rep = st.fold(device=device)
        res[ch].append((rep.seconds, rep.topk_seconds, rep.r_bytes))
    res["seq"].append(bf.sequential_write(work, res[1024][-1][2]))
rb = res[1024][0][2]
out = {"device": str(device), "r_bytes": rb, "seq_write_s": res["seq"]}
for ch in (1024, 4096):
    secs = [s for s, _, _ in res[ch]]
    out[f"chunk_{ch}"] = {"fold_s": secs, "topk_s": [t for _, t, _ in res[ch]]}
    mid, listed = statistics.median(secs), ", ".join(f"{s * 1e3:.0f}" for s in secs)
    print(
        f"r_chunk_examples {ch}: fold median {mid * 1e3:.0f} ms ({listed}), "
        f"{rb / mid / 1e9:.2f} GB/s = {statistics.median(res['seq']) / mid:.0%} of the sequential write; "
        f"top-k median {statistics.median(out[f'chunk_{ch}']['topk_s']) * 1e3:.0f} ms"
    )
print(f"sequential write of {rb / 1e6:.0f} MB: {', '.join(f'{s * 1e3:.0f}' for s in res['seq'])} ms")
json.dump(out, open(work / "fold_chunks.json", "w"), indent=1)
