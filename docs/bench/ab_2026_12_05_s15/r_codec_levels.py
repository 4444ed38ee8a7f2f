"""Blosc LZ4 levels 1/3/5/9, shuffled or not, on every chunk (4,096 x 256) of a folded store's R: encode time on one
thread (best of 4), decode time, size. STORE: the callback defaults' setting recorded with ``attribution="uniform"``
(paper CNN, 10,000 images, one epoch), whose R the library stores with LZ4 level 5, shuffled.

    python docs/bench/ab_2026_12_05_s15/r_codec_levels.py STORE
"""

from __future__ import annotations

import sys
import time

import numcodecs
import numpy as np

from responsibility import ResponsibilityStore


def main() -> None:
    numcodecs.blosc.set_nthreads(1)
    store = ResponsibilityStore.open(sys.argv[1])
    chunks = []
    for name in store.parameters:
        for sign in ("pos", "neg"):
            r = np.ascontiguousarray(store.fold_array(name, sign)[:])
            for r0 in range(0, r.shape[0], 4096):
                for c0 in range(0, r.shape[1], 256):
                    chunks.append(np.ascontiguousarray(r[r0 : r0 + 4096, c0 : c0 + 256]))
    raw = sum(c.nbytes for c in chunks)
    print(f"R: {raw / 1e6:.1f} MB in {len(chunks)} chunks")
    for shuffle in (1, 0):
        for level in (1, 3, 5, 9):
            codec = numcodecs.Blosc("lz4", level, shuffle)
            times = []
            for _ in range(4):
                t = time.perf_counter()
                encoded = [codec.encode(c) for c in chunks]
                times.append(time.perf_counter() - t)
            t = time.perf_counter()
            for e in encoded:
                codec.decode(e)
            decode = time.perf_counter() - t
            size = sum(len(e) for e in encoded) / raw
            print(
                f"shuffle={shuffle} level={level}: encode {1e3 * min(times):.0f} ms ({raw / min(times) / 1e9:.2f} "
                f"GB/s), decode {1e3 * decode:.0f} ms, size {size:.3f} of raw"
            )


if __name__ == "__main__":
    main()
