"""One-thread Blosc LZ4 encoding of a folded store's R in the fold's (4,096 x 256) chunks, shuffled or not."""

import time

import numcodecs
import numpy as np
import zarr
from numcodecs import Blosc

numcodecs.blosc.set_nthreads(1)
group = zarr.open_group("/work/prof/w.zarr", mode="r")
total: dict[tuple[int, int], tuple[int, int, float]] = {}
for name in ["net.fc1.weight", "net.fc1.bias", "net.conv.weight", "net.fc2.weight"]:
    for sign in ("pos", "neg"):
        node = group[f"fold/{name}"]
        r = node[node.attrs["current"]][sign][:]
        chunks = [
            np.ascontiguousarray(r[i : i + 4096, j : j + 256])
            for i in range(0, len(r), 4096)
            for j in range(0, r.shape[1], 256)
        ]
        raw = sum(c.nbytes for c in chunks)
        for level, shuffle in ((5, Blosc.SHUFFLE), (1, Blosc.SHUFFLE), (1, Blosc.NOSHUFFLE), (5, Blosc.NOSHUFFLE)):
            codec = Blosc("lz4", level, shuffle)
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                encoded = [codec.encode(c) for c in chunks]
                best = min(best, time.perf_counter() - t)
            size = sum(len(e) for e in encoded)
            a, b, c = total.get((level, shuffle), (0, 0, 0.0))
            total[(level, shuffle)] = (a + raw, b + size, c + best)
            print(name, sign, r.shape, level, shuffle, f"ratio {size / raw:.3f} encode {raw / best / 1e9:.2f} GB/s")
for (level, shuffle), (raw, size, seconds) in total.items():
    print("all of R", level, shuffle, f"ratio {size / raw:.3f} encode {seconds * 1e3:.0f} ms")
