"""One (10,000 x 1,280) float32 block, like one sign of fc2's per-example R in the defaults' store, written to a
new array with the store's codecs and chunks, at zarr's ``async.concurrency`` of 1, 2 and 10 (the default):
wall and CPU ms of 6 writes each (after one warm-up write).

    python docs/bench/ab_2026_12_05_s15/zarr_write_concurrency.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import zarr

from responsibility.store.layout import Layout, create_array


def main() -> None:
    layout = Layout()
    rng = np.random.default_rng(0)
    block = (rng.standard_normal((10_000, 1_280)).astype(np.float32) ** 2) * (rng.random((10_000, 1_280)) < 0.7)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        group = zarr.open_group(f"{tmp}/w.zarr", mode="w")
        for concurrency in (1, 2, 10):
            zarr.config.set({"async.concurrency": concurrency})
            walls, cpus = [], []
            for i in range(7):
                arr = create_array(
                    group, f"c{concurrency}_{i}", block.shape, "float32", (4096, 256), layout, ("e", "u"), True
                )
                w, c = time.perf_counter(), time.process_time()
                arr[:, :] = block
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
            print(
                f"concurrency {concurrency}: wall ms {[round(1e3 * x) for x in walls[1:]]}, "
                f"CPU ms {[round(1e3 * x) for x in cpus[1:]]}"
            )


if __name__ == "__main__":
    main()
