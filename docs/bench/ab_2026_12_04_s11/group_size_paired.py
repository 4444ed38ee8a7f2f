"""All 18 rankings of a folded defaults store's real R (one thread), old group size (``sqrt(n/k) / 2``) against
the new one, 15 alternating pairs (group_size_paired.txt)."""

import math
import statistics
import time

import torch
import zarr

import responsibility.kernels.topk as topk

torch.set_num_threads(1)
group = zarr.open_group("/work/prof/w.zarr", mode="r")
blocks = []
for name in group["fold"].group_keys():
    node = group[f"fold/{name}"]
    current = node[node.attrs["current"]]
    blocks.append((torch.from_numpy(current["pos"][:]), torch.from_numpy(current["neg"][:])))


def old(n: int, k: int) -> int:
    return 1 << max(0, min(6, round(math.log2(max(1.0, math.sqrt(n / max(1, k)) / 2)))))


sizes = {"old": old, "new": topk.group_size}
times: dict[str, list[float]] = {"old": [], "new": []}
for _ in range(15):
    for tag, size in sizes.items():
        topk.group_size = size
        t = time.perf_counter()
        for pos, neg in blocks:
            for parts in ([pos], [neg], [pos, neg]):
                topk.topk_columns(parts, 10)
        times[tag].append(time.perf_counter() - t)
ratios = [b / a for a, b in zip(times["old"], times["new"], strict=True)]
for tag, values in times.items():
    print(tag, " ".join(f"{x * 1e3:.0f}" for x in values))
print(
    "paired median new/old", round(statistics.median(ratios), 3), "range", round(min(ratios), 2), round(max(ratios), 2)
)
