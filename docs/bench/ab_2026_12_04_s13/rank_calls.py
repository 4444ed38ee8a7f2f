"""``topk_columns`` on a folded store's R, alone on one torch thread: group maxima and selection per parameter and
sign (medians of 15), as the fold ranks them.

    python docs/bench/ab_2026_12_04_s13/rank_calls.py STORE [PARAM ...]
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from responsibility.kernels import topk
from responsibility.store import ResponsibilityStore


def main() -> None:
    store = ResponsibilityStore.open(sys.argv[1])
    torch.set_num_threads(1)
    k = store.layout.topk
    for name in store.spec.names:
        if sys.argv[2:] and name not in sys.argv[2:]:
            continue
        pos = torch.from_numpy(store.read(name, "pos")).reshape(store.num_examples, -1).contiguous()
        neg = torch.from_numpy(store.read(name, "neg")).reshape(store.num_examples, -1).contiguous()
        for sign, parts in (("pos", [pos]), ("neg", [neg]), ("abs", [pos, neg])):
            g = topk.group_size(len(pos), k)
            group_max, select = [], []
            for _ in range(15):
                t0 = time.perf_counter()
                maxima = topk._group_max(parts, g)
                t1 = time.perf_counter()
                topk._select(parts, maxima, g, k)
                group_max.append(t1 - t0)
                select.append(time.perf_counter() - t1)
            zeros = float((sum(parts) == 0).float().mean())
            print(
                f"{name:18s} {sign} C={pos.shape[1]:5d} gmax {1e3 * statistics.median(group_max):6.2f} "
                f"select {1e3 * statistics.median(select):6.2f} ms  zeros {zeros:.2f}"
            )


if __name__ == "__main__":
    main()
