"""Six top-k-sized zarr writes ((10, 1280) int64 and float32 arrays, Blosc LZ4 + CRC32C, as a fold's index block)
one after another against gathered on zarr's event loop (through the private ``Array._async_array``). Medians of
30, twice each, in ms.

    python docs/bench/ab_2026_12_04_s14/zarr_gathered_writes.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.core.sync import sync


def main() -> None:
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        group = zarr.open_group(tmp, mode="w")
        codecs = [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec()]
        arrays = [
            group.create_array(f"a{i}", shape=(10, 1280), dtype="i8" if i % 2 == 0 else "f4", compressors=codecs)
            for i in range(6)
        ]
        rng = np.random.default_rng(0)
        values = [rng.integers(0, 10_000, (10, 1280)).astype(a.dtype) for a in arrays]

        def one_by_one() -> None:
            for a, v in zip(arrays, values, strict=True):
                a[:, :] = v

        def gathered() -> None:
            async def run() -> None:
                pairs = zip(arrays, values, strict=True)
                await asyncio.gather(*(a._async_array.setitem((slice(None), slice(None)), v) for a, v in pairs))

            sync(run())

        for write in (one_by_one, gathered) * 2:
            times = []
            for _ in range(30):
                t0 = time.perf_counter()
                write()
                times.append(time.perf_counter() - t0)
            print(f"{write.__name__}: {1e3 * statistics.median(times):.2f} ms for 6 writes")


if __name__ == "__main__":
    main()
