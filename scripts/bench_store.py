"""Zarr store throughput and size vs plain files, per codec, on real Δw from training the paper CNN.

Data: ``--steps`` SGD steps (batch 64) of ``responsibility.experiments.models.PaperCNN`` on ``--examples`` Fashion-MNIST
images, every parameter's Δw per step (one journal row of ~694k float32; ReLU and black image borders make many
of them exactly zero). With ``--synthetic`` (or no Fashion-MNIST on the machine), Gaussian rows with
``--zero-fraction`` exact zeros instead. R data: ``store.read`` of the first ``--r-columns`` fc1 weights after
recording (after one epoch R has one distinct row per batch and compresses unrealistically well; the default
is three epochs).

For each codec (``Layout(codec=...)``), in one directory under ``outputs/``:

- journal: ``store.write_journal`` + ``commit`` of whole chunk rows (``chunk_steps`` steps each), as the recorder
  does, then ``store.journal_rows`` of everything; against a plain sequential ``write``/``readinto`` of the same
  bytes in the same blocks;
- R: column-block writes of an (examples, columns) float32 array chunked like a fold's (1024 x 256), as a fold
  writes, then column-block reads; against plain file writes/reads of the same blocks;
- bytes on disk (all files of the array) against the raw float32 size;
- Blosc settings (``--variants``): encode and decode GB/s and size of the same chunks under lz4 with and
  without byte shuffling, at two levels, one thread (as one zarr chunk is encoded); ``--r-store`` adds the R of
  every folded parameter of an existing store (per-example R, say, which ReLU leaves with runs of zeros).

Neither side calls fsync and reads follow writes, so reads come from the page cache: these are CPU-side
costs of the format (chunking, compression, checksums, metadata), not disk speeds. Zarr figures are one pass,
plain-file figures the best of three.

    python scripts/bench_store.py --out outputs/bench/store.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import zarr

from responsibility import Layout, ParamSpec, RecordingSpec, ResponsibilityStore
from responsibility.choices import CODECS
from responsibility.recording.recorder import Recorder

R_CHUNKS = (1024, 256)


def real_deltas(examples: int, steps: int, seed: int) -> tuple[RecordingSpec, np.ndarray, np.ndarray, np.ndarray]:
    """Train the paper CNN for ``steps`` steps; returns spec, journal rows (steps, D), ids, ids per step."""
    from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist
    from responsibility.experiments.models import PaperCNN

    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=examples, seed=seed)
    torch.manual_seed(seed)
    model = PaperCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    params = list(model.named_parameters())
    spec = RecordingSpec(tuple(ParamSpec(n, tuple(p.shape)) for n, p in params), num_examples=len(data))
    rows = np.empty((steps, spec.journal_width), np.float32)
    order = np.random.default_rng(seed).permutation(len(data))
    ids, counts = [], []
    for t in range(steps):
        batch = order[(t * 64) % len(data) :][:64]
        x = torch.stack([data[int(i)][0] for i in batch])
        y = torch.as_tensor([int(data[int(i)][1]) for i in batch])
        before = torch.cat([p.detach().reshape(-1) for _, p in params])
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        rows[t] = (torch.cat([p.detach().reshape(-1) for _, p in params]) - before).numpy()
        ids.append(batch)
        counts.append(len(batch))
    return spec, rows, np.concatenate(ids).astype(np.int64), np.asarray(counts, np.int64)


def synthetic_deltas(
    examples: int, steps: int, width: int, zero_fraction: float, seed: int
) -> tuple[RecordingSpec, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((steps, width), dtype=np.float32) * np.float32(1e-3)
    rows[rng.random(rows.shape) < zero_fraction] = 0.0
    spec = RecordingSpec((ParamSpec("fc1.weight", (width,)),), num_examples=examples)
    ids = np.concatenate([rng.permutation(examples)[:64] for _ in range(steps)]).astype(np.int64)
    return spec, rows, ids, np.full(steps, 64, np.int64)


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def bench_journal(
    workdir: Path, spec: RecordingSpec, rows: np.ndarray, ids: np.ndarray, counts: np.ndarray, codec: str
):
    path = workdir / f"journal_{codec}.zarr"
    shutil.rmtree(path, ignore_errors=True)
    layout = Layout(chunk_steps=32, codec=codec)
    store = ResponsibilityStore.create(path, spec, layout=layout)
    ends = np.cumsum(counts)
    t0 = time.perf_counter()
    for s0 in range(0, len(rows), layout.chunk_steps):
        s1 = min(len(rows), s0 + layout.chunk_steps)
        i0 = int(ends[s0 - 1]) if s0 else 0
        steps = np.zeros((s1 - s0, 4), np.int64)
        steps[:, 0] = ends[s0:s1]
        store.write_journal(s0, rows[s0:s1], ids[i0 : int(ends[s1 - 1])], i0, steps)
        store.commit(s1, int(ends[s1 - 1]))
    write = time.perf_counter() - t0
    reader = ResponsibilityStore.open(path)
    t0 = time.perf_counter()
    back = reader.journal_rows(0, reader.steps)[0]
    read = time.perf_counter() - t0
    if not np.array_equal(back, rows):
        raise AssertionError("journal read back differs")
    size = disk_bytes(path / "journal" / "rows")
    # The same bytes as plain file blocks, one write per chunk row.
    blocks = [rows[s0 : s0 + layout.chunk_steps] for s0 in range(0, len(rows), layout.chunk_steps)]
    plain_w, plain_r = plain_file(workdir / f"journal_{codec}.bin", blocks)
    shutil.rmtree(path)
    return {"write_s": write, "read_s": read, "disk_bytes": size, "plain_write_s": plain_w, "plain_read_s": plain_r}


def bench_r(workdir: Path, r: np.ndarray, codec: str, width: int):
    path = workdir / f"r_{codec}.zarr"
    shutil.rmtree(path, ignore_errors=True)
    arr = zarr.create_array(
        zarr.storage.LocalStore(path),
        shape=r.shape,
        dtype="float32",
        chunks=(min(r.shape[0], R_CHUNKS[0]), min(r.shape[1], R_CHUNKS[1])),
        fill_value=np.nan,
        compressors=Layout(codec=codec).compressors(),
    )
    cols = [slice(c0, min(r.shape[1], c0 + width)) for c0 in range(0, r.shape[1], width)]
    t0 = time.perf_counter()
    for c in cols:
        arr[:, c] = r[:, c]
    write = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = [arr[:, c] for c in cols]
    read = time.perf_counter() - t0
    if not all(np.array_equal(b, r[:, c]) for b, c in zip(back, cols, strict=True)):
        raise AssertionError("R read back differs")
    size = disk_bytes(path)
    plain_w, plain_r = plain_file(workdir / f"r_{codec}.bin", [np.ascontiguousarray(r[:, c]) for c in cols])
    shutil.rmtree(path)
    return {"write_s": write, "read_s": read, "disk_bytes": size, "plain_write_s": plain_w, "plain_read_s": plain_r}


VARIANTS = [(level, shuffle) for level in (5, 1) for shuffle in ("shuffle", "noshuffle")]  # lz4


def chunks_of(a: np.ndarray, chunks: tuple[int, ...]) -> list[np.ndarray]:
    return [
        np.ascontiguousarray(a[r : r + chunks[0], c : c + chunks[1]])
        for r in range(0, a.shape[0], chunks[0])
        for c in range(0, a.shape[1], chunks[1])
    ]


def folded_r_chunks(path: Path) -> list[np.ndarray]:
    """The stored R chunks (both parts) of every folded parameter of a store, decoded."""
    store = ResponsibilityStore.open(path)
    out: list[np.ndarray] = []
    for name in store.parameters:
        if store.fold_group(name) is not None:
            for part in ("pos", "neg"):
                arr = store.fold_array(name, part)
                out += chunks_of(np.asarray(arr[:]), arr.chunks)
    if not out:
        raise SystemExit(f"{path}: no folded parameter")
    return out


def codec_variants(chunks: list[np.ndarray], repeats: int = 3) -> dict[str, dict[str, float]]:
    """Blosc encode/decode of the same chunks per setting, single-threaded; best of ``repeats``."""
    from numcodecs import Blosc

    Blosc.use_threads = False  # zarr encodes chunks on worker threads, where Blosc runs single-threaded
    raw = sum(c.nbytes for c in chunks)
    out = {}
    for level, shuffle in VARIANTS:
        codec = Blosc(cname="lz4", clevel=level, shuffle=Blosc.SHUFFLE if shuffle == "shuffle" else Blosc.NOSHUFFLE)
        enc_s = dec_s = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            encoded = [codec.encode(c) for c in chunks]
            enc_s = min(enc_s, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for e in encoded:
                codec.decode(e)
            dec_s = min(dec_s, time.perf_counter() - t0)
        out[f"lz4-{level}-{shuffle}"] = {
            "encode_gbps": gbps(raw, enc_s),
            "decode_gbps": gbps(raw, dec_s),
            "ratio": sum(len(e) for e in encoded) / raw,
        }
    return out


def plain_file(path: Path, blocks: list[np.ndarray], repeats: int = 3) -> tuple[float, float]:
    """Seconds to write the blocks to one file sequentially, and to read them back into preallocated buffers.

    Best of ``repeats``: a plain file write is short enough for other processes on the machine to distort it.
    """
    results = [_plain_once(path, blocks) for _ in range(repeats)]
    return min(w for w, _ in results), min(r for _, r in results)


def _plain_once(path: Path, blocks: list[np.ndarray]) -> tuple[float, float]:
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for b in blocks:
            f.write(memoryview(np.ascontiguousarray(b)).cast("B"))
    write = time.perf_counter() - t0
    out = [np.empty_like(b) for b in blocks]
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        for o in out:
            f.readinto(memoryview(o).cast("B"))
    read = time.perf_counter() - t0
    path.unlink()
    return write, read


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=96, help="96 steps of 64 = 3 epochs of 2048")
    ap.add_argument("--r-columns", type=int, default=8192)
    ap.add_argument("--r-block", type=int, default=2048, help="columns per R write/read (a fold's column block)")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--zero-fraction", type=float, default=0.5, help="exact zeros in synthetic rows")
    ap.add_argument("--workdir", type=Path, default=Path("outputs/bench/store"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", action="store_true", help="also time Blosc settings on the same chunks")
    ap.add_argument("--r-store", type=Path, default=None, help="with --variants: also the R of this store's folds")
    args = ap.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    source = "synthetic"
    if not args.synthetic:
        try:
            spec, rows, ids, counts = real_deltas(args.examples, args.steps, args.seed)
            source = "PaperCNN on Fashion-MNIST, SGD lr 0.05, batch 64"
        except FileNotFoundError as exc:
            print(f"no Fashion-MNIST ({exc}); using synthetic rows")
    if source == "synthetic":
        spec, rows, ids, counts = synthetic_deltas(args.examples, args.steps, 693_722, args.zero_fraction, args.seed)
    # R of the first fc1 weights, folded by the library from the journal just recorded.
    rstore_path = args.workdir / "r_source.zarr"
    shutil.rmtree(rstore_path, ignore_errors=True)
    rstore = ResponsibilityStore.create(rstore_path, spec, layout=Layout(chunk_steps=32))
    rec_params = [(p, torch.nn.Parameter(torch.zeros(p.shape))) for p in spec.params]
    rec = Recorder(rstore, rec_params)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    cols = spec.journal_columns()
    for t in range(len(rows)):
        rec.snapshot()
        with torch.no_grad():
            for p, w in rec_params:
                w.add_(torch.from_numpy(rows[t, cols[p.name]["delta"]]).reshape(p.shape))
        rec.record_step(ids[offsets[t] : offsets[t + 1]])
    rec.close()
    fc1 = next(p.name for p in spec.params if "fc1.weight" in p.name)
    r = rstore.read(fc1, weights=np.arange(min(args.r_columns, spec.param(fc1).units)))
    shutil.rmtree(rstore_path)

    zeros_j = float((rows == 0).mean())
    zeros_r = float((r == 0).mean())
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "data": {
            "source": source,
            "journal_shape": list(rows.shape),
            "journal_zero_fraction": zeros_j,
            "r_shape": list(r.shape),
            "r_zero_fraction": zeros_r,
        },
        "journal": {},
        "r": {},
    }
    print(f"data: {source}")
    print(f"journal {rows.shape} float32, {100 * zeros_j:.1f}% exact zeros; R {r.shape}, {100 * zeros_r:.1f}% zeros")
    head = f"{'array':<8}{'codec':<6}{'write GB/s':>11}{'plain':>7}{'read GB/s':>10}{'plain':>7}{'disk/raw':>9}"
    print(head)
    print("-" * len(head))
    for kind, data, fn in (
        ("journal", rows, lambda c: bench_journal(args.workdir, spec, rows, ids, counts, c)),
        ("r", r, lambda c: bench_r(args.workdir, r, c, args.r_block)),
    ):
        for codec in CODECS:
            m = fn(codec)
            raw = data.nbytes
            m.update(
                raw_bytes=raw,
                write_gbps=gbps(raw, m["write_s"]),
                read_gbps=gbps(raw, m["read_s"]),
                plain_write_gbps=gbps(raw, m["plain_write_s"]),
                plain_read_gbps=gbps(raw, m["plain_read_s"]),
                disk_ratio=m["disk_bytes"] / raw,
            )
            result[kind][codec] = m
            print(
                f"{kind:<8}{codec:<6}{m['write_gbps']:>11.2f}{m['plain_write_gbps']:>7.2f}{m['read_gbps']:>10.2f}"
                f"{m['plain_read_gbps']:>7.2f}{m['disk_ratio']:>9.3f}"
            )
    if args.variants:
        lay = Layout()
        sets = {"journal": chunks_of(rows, (lay.chunk_steps, lay.journal_chunk_cols)), "r": chunks_of(r, R_CHUNKS)}
        if args.r_store is not None:
            sets[f"r of {args.r_store.name}"] = folded_r_chunks(args.r_store)
        variants: dict[str, dict] = {}
        result["variants"] = variants
        print(f"\n{'data':<28}{'blosc':<20}{'encode GB/s':>12}{'decode GB/s':>12}{'size/raw':>9}")
        for kind, chunks in sets.items():
            zeros = float(np.mean([(c == 0).mean() for c in chunks]))
            variants[kind] = {"zero_fraction": zeros, **codec_variants(chunks)}
            for name, m in variants[kind].items():
                if isinstance(m, dict):
                    print(f"{kind:<28}{name:<20}{m['encode_gbps']:>12.2f}{m['decode_gbps']:>12.2f}{m['ratio']:>9.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
