"""Writing one parameter's R (both signs) with zarr as the fold does (its chunks, ``write_empty_chunks``), under
four codec chains, 5 times each; then the LZ4 encoding of the same chunks alone, on one thread.

    python r_write_codecs.py STORE [PARAMETER]

STORE: a folded store, e.g. one the callback defaults wrote (``fit_end_timeline.py`` leaves them in a temp dir);
PARAMETER defaults to ``net.fc2.weight`` (10,000 x 1,280 per sign for the paper CNN).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

CHUNKS = (4096, 256)


def main() -> None:
    store = zarr.open_group(sys.argv[1], mode="r")
    name = sys.argv[2] if len(sys.argv) > 2 else "net.fc2.weight"
    current = store[f"fold/{name}"].attrs["current"]
    parts = [store[f"fold/{name}/{current}/{sign}"][:] for sign in ("pos", "neg")]
    print(f"{name}: {sum(p.nbytes for p in parts) / 1e6:.1f} MB raw")
    work = tempfile.mkdtemp(dir=".")
    chains = {
        "lz4-1 + crc32c (the fold's)": [BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle"), Crc32cCodec()],
        "lz4-1": [BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle")],
        "crc32c only": [Crc32cCodec()],
        "none": None,
    }
    try:
        for label, compressors in chains.items():
            times = []
            for r in range(5):
                group = zarr.open_group(f"{work}/{r}_{len(times)}_{label[:3]}", mode="w")
                arrays = [
                    group.create_array(
                        sign,
                        shape=parts[0].shape,
                        dtype="float32",
                        chunks=CHUNKS,
                        compressors=compressors,
                        fill_value=0,
                        config={"write_empty_chunks": True},
                    )
                    for sign in ("pos", "neg")
                ]
                wall, cpu = time.perf_counter(), time.process_time()
                for array, part in zip(arrays, parts, strict=True):
                    array[:, :] = part
                times.append((time.perf_counter() - wall, time.process_time() - cpu))
            times.sort()
            print(
                f"{label:28s} wall ms {[round(w * 1e3) for w, _ in times]}, CPU ms {[round(c * 1e3) for _, c in times]}"
            )
    finally:
        shutil.rmtree(work)
    codec = numcodecs.Blosc("lz4", 1, numcodecs.Blosc.NOSHUFFLE)
    chunks = [
        np.ascontiguousarray(p[i : i + CHUNKS[0], j : j + CHUNKS[1]])
        for p in parts
        for i in range(0, p.shape[0], CHUNKS[0])
        for j in range(0, p.shape[1], CHUNKS[1])
    ]
    start = time.perf_counter()
    encoded = [codec.encode(c) for c in chunks]
    print(
        f"LZ4-1 encoding alone, one thread: {1e3 * (time.perf_counter() - start):.0f} ms, "
        f"{sum(len(e) for e in encoded) / sum(p.nbytes for p in parts):.3f} of raw"
    )


if __name__ == "__main__":
    main()
