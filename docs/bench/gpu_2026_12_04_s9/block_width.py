"""The library's fused fold at 1,024 and 2,048 columns per program (MAX_BLOCK_P), alternating, with store.fold()'s
kernel calls; fractions as bench_fold's (cells x 8 bytes against the best copy of the run)."""

import json
import sys

import numpy as np
import torch

sys.path.insert(0, "scripts")
import bench_fold as bf  # noqa: E402

from responsibility.kernels import index_add_fold, triton_fold  # noqa: E402
from responsibility.store import DEFAULT_FOLD_BUDGET  # noqa: E402
from responsibility.store._accumulate import fold_group_ids, fold_step_block  # noqa: E402

dev = torch.device("cuda")
n, p = 100_000, 8192
out = []
for epochs in (1, 3):
    ids, counts = bf.membership(n, 64, epochs, 0)
    rows = torch.from_numpy(np.abs(bf.journal_rows(len(counts), p, 0.3, 0))).to(dev)
    groups = bf.kernel_groups(
        ids,
        counts,
        fold_group_ids(DEFAULT_FOLD_BUDGET // 2, p, False),
        fold_step_block(DEFAULT_FOLD_BUDGET // 2, 8 * p, 1),
    )
    groups = [(i.to(dev), r.to(dev)) for i, r in groups]
    cells = int(counts.sum()) * p
    bw = max(bf.copy_bandwidth(4.0, 5, dev))
    acc = torch.zeros(n, p, device=dev)
    times = {1024: [], 2048: []}
    bits = {}
    for rep in range(9):
        for block in (1024, 2048):
            triton_fold.MAX_BLOCK_P = block
            t = bf.run_kernel(index_add_fold, acc, rows, groups)
            if rep:
                times[block].append(t)
            else:
                bits[block] = acc[:, :4096].cpu().view(torch.int32).clone()
    for block, ts in times.items():
        ts.sort()
        row = dict(
            epochs=epochs,
            block=block,
            calls=len(groups),
            best=ts[0],
            median=ts[len(ts) // 2],
            frac_best=cells * 8 / ts[0] / 1e9 / bw,
            frac_median=cells * 8 / ts[len(ts) // 2] / 1e9 / bw,
            copy_gbps=bw,
            same_bits_as_1024=bool(torch.equal(bits[block], bits[1024])),
        )
        out.append(row)
        print(json.dumps(row), flush=True)
    del acc
json.dump(out, open(sys.argv[1], "w"), indent=1)
