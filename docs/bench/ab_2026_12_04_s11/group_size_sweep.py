"""One-thread time of ``topk_columns`` for three signs at fixed group sizes: ``python group_size_sweep.py K``.

Synthetic blocks: ``pos`` is uniform**4 with 30% exact zeros, ``neg`` uniform**4 (group_size_sweep.txt).
"""

import sys
import time

import torch

import responsibility.kernels.topk as topk

torch.set_num_threads(1)
torch.manual_seed(0)
k = int(sys.argv[1]) if len(sys.argv) > 1 else 10
sizes = [int(g) for g in sys.argv[2:]] or [4, 8, 16, 32, 64]
for n, c in ((1000, 4096), (5000, 2048), (20000, 1024), (100000, 256), (300000, 128)):
    pos = torch.rand(n, c) ** 4
    pos[torch.rand(n, c) < 0.3] = 0
    neg = torch.rand(n, c) ** 4
    times: dict[int, list[float]] = {}
    for _ in range(3):
        for g in sizes:
            topk.group_size = lambda n_, k_, g=g: g
            t = time.perf_counter()
            for parts in ([pos], [neg], [pos, neg]):
                topk.topk_columns(parts, k)
            times.setdefault(g, []).append(time.perf_counter() - t)
    best = min(times, key=lambda g: min(times[g]))
    print(k, n, c, {g: f"{min(v) * 1e3:.0f}" for g, v in times.items()}, "best", best, flush=True)
