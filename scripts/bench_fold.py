"""Fold throughput on the CPU: the library kernel, the full ``store.fold()`` path, the memory-copy and disk bounds.

The membership is realistic: every example once per epoch in shuffled batches of ``--batch``; journal rows are
non-negative |Δw|-like values with ``--zero-fraction`` exact zeros. One run measures, on the same machine:

- memory copy bandwidth: ``dst.copy_(src)`` of a large preallocated float32 tensor, warm, counted as bytes read +
  bytes written;
- the library kernel :func:`responsibility.kernels.index_add_fold` over all steps into an example-major (N, P) float32
  accumulator, in the step groups ``store.fold()`` would use for that width: as the library runs it, with torch
  limited to one thread during the call, forced to scatter only, and forced to dense rounds wherever possible;
  next to the kernel it replaced (one ``index_add_`` of the whole gathered group); on a GPU also the rounds of
  distinct ids (the device path without Triton) and the fused Triton kernel alone; every variant's bits are
  compared with the chronological fold on the CPU (on a GPU, over the first 256 columns: its atomics add an
  example's repeats in any order, so a GPU ``index_add_`` is no reference);
- ``store.fold()`` on a store written by the Recorder (one (P,) parameter, codec lz4), which also reads the journal,
  folds R_pos and R_neg, writes them and builds the top-k index; with the library kernel (default threads and one
  thread during the kernel) and with the replaced one, the seconds spent inside the kernel and ranking the top-k
  index, and the GB/s of R written against a plain sequential write of the same bytes to the same directory
  (one file, no fsync, as the store writes), timed between the folds; with the library kernel also the same
  journal in a store without a top-k index (``topk=0``), alternately: what the index adds to the fold's time.
  Ranking overlaps R's writes, so its own seconds overstate that where cores are few (2026-12-05, 2 cores: ranking
  the callback defaults' R took 78 ms alone and 155 ms beside the writes; ranked before the writes, the fold took
  as long).

Fold traffic is counted as 8 bytes per R cell updated (read + write of one float32 accumulator cell); the ratio of
that to the best copy bandwidth of the workload says how close a kernel gets to the memory bound. Repeats are
interleaved across variants, so load from other processes hits all of them alike; best and median are both
reported.

    python scripts/bench_fold.py --epochs 1 --columns 1562 --out docs/bench/fold.json   # issue 12's store
    python scripts/bench_fold.py --calibrate --repeats 9      # the kernel's dense-pass threshold
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from responsibility import Layout, ParamSpec, RecordingSpec, ResponsibilityStore
from responsibility.kernels import (
    FoldKernel,
    dense_threshold,
    index_add_fold,
    plain_index_add,
    scatter,
    step_groups,
    triton_fold,
)
from responsibility.recording.recorder import Recorder
from responsibility.store import DEFAULT_FOLD_BUDGET, FoldReport
from responsibility.store._accumulate import fold_group_ids, fold_step_block

REFERENCE = "before: one index_add_ per step group"
LIBRARY = "library index_add_fold"


def single_threaded(kernel: FoldKernel) -> FoldKernel:
    """``kernel`` with torch's intra-op threads set to 1 during the call (the library itself leaves them alone)."""

    def run(acc, rows, ids, row_of_id, scale=None) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            kernel(acc, rows, ids, row_of_id, scale)
        finally:
            torch.set_num_threads(threads)

    return run


LIBRARY_1T = "library index_add_fold, 1 torch thread"
# The device path without Triton: rounds of distinct ids, each gathered, added and put back.
ROUNDS = "distinct rounds, 256 MB device slices"
DEVICE_SLICES = "distinct rounds, 32 MB device slices"
FUSED = "fused triton"
# Not timed on the CPU, where the rounds are not the library's path and Triton's kernel does not run.
DEVICE_ONLY = (ROUNDS, DEVICE_SLICES, FUSED)
KERNELS: dict[str, FoldKernel] = {
    REFERENCE: plain_index_add,
    LIBRARY: index_add_fold,
    LIBRARY_1T: single_threaded(index_add_fold),
    "library, scatter only": functools.partial(index_add_fold, dense_fraction=2.0),
    "library, dense rounds wherever possible": functools.partial(index_add_fold, dense_fraction=0.0),
    ROUNDS: functools.partial(scatter._distinct_rounds, block_bytes=scatter.DEVICE_BLOCK_BYTES),
    # Slices whose gathered rows stay in an H200's 60 MB L2.
    DEVICE_SLICES: functools.partial(scatter._distinct_rounds, block_bytes=32 << 20),
    # The Triton kernel alone, which index_add_fold takes on CUDA for float32 operands.
    FUSED: triton_fold.fused_fold,
}


class TimedKernel:
    """A kernel that adds up the seconds spent in it."""

    def __init__(self, kernel: FoldKernel) -> None:
        self.kernel, self.seconds = kernel, 0.0

    def __call__(self, acc, rows, ids, row_of_id, scale=None) -> None:
        t0 = time.perf_counter()
        self.kernel(acc, rows, ids, row_of_id, scale)
        sync(acc.device)
        self.seconds += time.perf_counter() - t0


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def membership(n: int, batch: int, epochs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids of every step (each example once per epoch, shuffled) and the ids per step."""
    rng = np.random.default_rng(seed)
    ids, counts = [], []
    for _ in range(epochs):
        perm = rng.permutation(n)
        for b0 in range(0, n, batch):
            ids.append(perm[b0 : b0 + batch])
            counts.append(len(ids[-1]))
    return np.concatenate(ids).astype(np.int64), np.asarray(counts, np.int64)


def journal_rows(steps: int, cols: int, zero_fraction: float, seed: int) -> np.ndarray:
    """Signed Δw-like rows: Gaussian of per-column scale, with a fraction of exact zeros."""
    rng = np.random.default_rng(seed + 1)
    rows = rng.standard_normal((steps, cols), dtype=np.float32) * np.float32(1e-3)
    rows[rng.random((steps, cols)) < zero_fraction] = 0.0
    return rows


def copy_bandwidth(gib: float, repeats: int, device: torch.device) -> list[float]:
    """GB/s of ``dst.copy_(src)`` on ``device`` (read + write bytes), warm, one figure per repeat."""
    src = torch.ones(int(gib * 2**30) // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    out = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        out.append(2 * src.numel() * 4 / (time.perf_counter() - t0) / 1e9)
    return out


def run_kernel(
    kernel: FoldKernel, acc: torch.Tensor, rows: torch.Tensor, groups: list[tuple[torch.Tensor, torch.Tensor]]
) -> float:
    """Fold every step group into ``acc`` (zeroed first, so its pages are in); returns the seconds."""
    acc.zero_()
    sync(acc.device)
    t0 = time.perf_counter()
    for ids, row_of_id in groups:
        kernel(acc, rows, ids, row_of_id, None)
    sync(acc.device)
    return time.perf_counter() - t0


def kernel_groups(
    ids: np.ndarray, counts: np.ndarray, max_ids: int, step_block: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ids, row_of_id) of every kernel call ``store.fold()`` makes: blocks of ``step_block`` steps (the journal is
    read a block at a time), each split into groups of at most ``max_ids`` ids."""
    counts_t = torch.from_numpy(counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    ids_t = torch.from_numpy(ids)
    groups = []
    for s0 in range(0, len(counts), step_block):
        s1 = min(len(counts), s0 + step_block)
        for g0, g1 in step_groups(counts_t[s0:s1], max_ids):
            rows = torch.repeat_interleave(torch.arange(s0 + g0, s0 + g1), counts_t[s0 + g0 : s0 + g1])
            groups.append((ids_t[offsets[s0 + g0] : offsets[s0 + g1]], rows))
    return groups


def build_store(
    path: Path, n: int, cols: int, rows: np.ndarray, ids: np.ndarray, counts: np.ndarray, topk: int = 10
) -> None:
    """A store whose journal holds exactly ``rows`` and the membership, written by the Recorder; its folds build
    a top-k index of depth ``topk`` (0: none)."""
    if path.exists():
        shutil.rmtree(path)
    spec = RecordingSpec((ParamSpec("w", (cols,)),), num_examples=n)
    store = ResponsibilityStore.create(path, spec, layout=Layout(chunk_steps=64, topk=topk))
    w = torch.nn.Parameter(torch.zeros(cols))
    rec = Recorder(store, [(spec.params[0], w)])
    delta = torch.from_numpy(rows)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for t in range(len(counts)):
        rec.snapshot()
        with torch.no_grad():
            # Δw as the recorder sees it: (w + d) - w, which rounds; the fold uses whatever was journaled.
            w.add_(delta[t])
        rec.record_step(ids[offsets[t] : offsets[t + 1]])
    rec.close()


def time_store_fold(
    base: Path, work: Path, kernel: FoldKernel, device: torch.device
) -> tuple[FoldReport, float, ResponsibilityStore]:
    """``store.fold()`` of a fresh copy of ``base``: its report, the seconds in the kernel, the store."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base, work)
    store = ResponsibilityStore.open(work, "r+")
    timed = TimedKernel(kernel)
    report = store.fold(kernel=timed, device=device)
    return report, timed.seconds, store


def sequential_write(directory: Path, nbytes: int) -> float:
    """Seconds to write ``nbytes`` of random float32 to one new file in ``directory`` (closed, not fsynced)."""
    block = np.random.default_rng(0).standard_normal(1 << 22, dtype=np.float32).tobytes()
    path = directory / "sequential.bin"
    start = time.perf_counter()
    with open(path, "wb") as f:
        for offset in range(0, nbytes, len(block)):
            f.write(block[: min(len(block), nbytes - offset)])
    seconds = time.perf_counter() - start
    path.unlink()
    return seconds


MAX_CALIBRATION_EXAMPLES = 4_000_000


def calibrate(widths: list[int], acc_mib: int, repeats: int) -> list[dict]:
    """Per width, one round in which every example occurs once (batches of 64): scattered vs added densely.

    The ratio of the best times is what :data:`responsibility.kernels.DENSE_CELL_RATIO` and ``DENSE_ROW_CELLS`` model:
    the coverage a round needs for a dense pass over all examples to pay. The accumulator is ``acc_mib`` MiB, or
    :data:`MAX_CALIBRATION_EXAMPLES` rows for narrow widths.
    """
    print(f"{'width':>6} {'examples':>9} {'scatter ns/id':>13} {'dense ns/ex':>11} {'ratio':>6} {'model':>6}")
    out = []
    for width in widths:
        n = max(64, min(MAX_CALIBRATION_EXAMPLES, (acc_mib << 20) // (4 * width)))
        g = torch.Generator().manual_seed(width)
        steps = -(-n // 64)
        rows = torch.rand(steps, width, generator=g)
        ids = torch.randperm(n, generator=g)
        row_of_id = torch.arange(steps).repeat_interleave(64)[:n]
        acc = torch.zeros(n, width)
        times: dict[str, list[float]] = {"scatter": [], "dense": []}
        for _ in range(repeats):
            for path, fraction in (("scatter", 2.0), ("dense", 0.0)):
                t0 = time.perf_counter()
                index_add_fold(acc, rows, ids, row_of_id, None, dense_fraction=fraction)
                times[path].append(time.perf_counter() - t0)
        ratio = min(times["dense"]) / min(times["scatter"])
        print(
            f"{width:>6} {n:>9} {min(times['scatter']) / n * 1e9:>13.1f} {min(times['dense']) / n * 1e9:>11.1f} "
            f"{ratio:>6.2f} {dense_threshold(width):>6.2f}"
        )
        out.append({"width": width, "examples": n, "seconds": times, "ratio_of_best": ratio})
        del acc
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=10_000)
    ap.add_argument("--columns", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--zero-fraction", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=5, help="kernel repeats (interleaved across variants)")
    ap.add_argument("--store-repeats", type=int, default=2, help="store.fold() repeats per kernel")
    ap.add_argument("--copy-gib", type=float, default=1.0)
    ap.add_argument("--kernels", nargs="*", default=None, help="substrings of kernel names to run (default: all)")
    ap.add_argument("--skip-store", action="store_true", help="kernels only, no store.fold()")
    ap.add_argument("--workdir", type=Path, default=Path("outputs/bench/fold"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--device",
        default="cpu",
        help="where the kernels and store.fold() sum (cuda: against the GPU's copy bandwidth; CUDA's atomic adds "
        "make R equal to the reference up to rounding, not bit for bit)",
    )
    ap.add_argument(
        "--group-ids",
        type=int,
        default=None,
        help="ids per step group in the kernel runs (default: what store.fold() uses for this width)",
    )
    ap.add_argument(
        "--calibrate",
        type=int,
        nargs="*",
        metavar="WIDTH",
        default=None,
        help="instead: time a full round scattered vs dense at these widths (default 1 4 16 64 256 1024 4096 8192)",
    )
    ap.add_argument("--calibrate-mib", type=int, default=256, help="accumulator size for --calibrate")
    args = ap.parse_args(argv)
    if args.calibrate is not None:
        widths = args.calibrate or [1, 4, 16, 64, 256, 1024, 4096, 8192]
        runs = calibrate(widths, args.calibrate_mib, max(3, args.repeats))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"load_average_at_start": os.getloadavg(), "calibration": runs}, indent=1))
            print(f"wrote {args.out}")
        return

    n, p = args.examples, args.columns
    device = torch.device(args.device)
    # store.fold()'s grouping for this width (it gives accumulate() half its budget; uniform steps of both signs'
    # rows; chunk rows of one step): journal blocks of this many steps, at most this many ids per kernel call.
    step_block = fold_step_block(DEFAULT_FOLD_BUDGET // 2, 4 * p * 2, 1)
    max_ids = args.group_ids or fold_group_ids(DEFAULT_FOLD_BUDGET // 2, p, per_example=False)
    kernels = {
        k: v
        for k, v in KERNELS.items()
        if (k == REFERENCE or args.kernels is None or any(s in k for s in args.kernels))
        and (k not in DEVICE_ONLY or device.type != "cpu")
    }
    if FUSED in kernels and not triton_fold.triton_available(device):
        del kernels[FUSED]
        print(f"not timed: {FUSED!r} (needs Triton and a CUDA device)")
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average_at_start": os.getloadavg(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        },
        "setup": {
            "examples": n,
            "columns": p,
            "batch": args.batch,
            "zero_fraction": args.zero_fraction,
            "max_ids_per_group": max_ids,
            "steps_per_block": step_block,
        },
        "copy_gbps": [],
        "runs": [],
    }
    print(
        f"N={n} examples, P={p} columns, batch {args.batch}, {torch.get_num_threads()} torch threads, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for epochs in args.epochs:
        ids, counts = membership(n, args.batch, epochs, args.seed)
        signed = journal_rows(len(counts), p, args.zero_fraction, args.seed)
        cpu_rows = torch.from_numpy(np.abs(signed))
        rows = cpu_rows.to(device)
        cells = int(counts.sum()) * p
        cpu_groups = kernel_groups(ids, counts, max_ids, step_block)
        groups = [(i.to(device), r.to(device)) for i, r in cpu_groups]
        # The bits every variant must give: the chronological fold on the CPU (columns are independent).
        ref_cols = p if device.type == "cpu" else min(p, 256)
        reference = torch.zeros(n, ref_cols)
        for i, r in cpu_groups:
            plain_index_add(reference, cpu_rows[:, :ref_cols].contiguous(), i, r)
        # The copy bandwidth is measured next to each workload: load from other processes moves both alike.
        bw = copy_bandwidth(args.copy_gib, max(3, args.repeats), device)
        result["copy_gbps"].append({"epochs": epochs, "gbps": bw})
        print(
            f"\nepochs {epochs}: {len(groups)} step groups; memory copy bandwidth (read+write) GB/s: "
            + ", ".join(f"{x:.1f}" for x in bw)
        )
        print(HEADER)
        print("-" * len(HEADER))
        acc = torch.zeros(n, p, device=device)
        times: dict[str, list[float]] = {name: [] for name in kernels}
        exact: dict[str, bool] = {}
        for kernel in kernels.values():
            run_kernel(kernel, acc, rows, groups[:1])  # warm-up
        for _ in range(args.repeats):
            for name, kernel in kernels.items():
                times[name].append(run_kernel(kernel, acc, rows, groups))
                if name not in exact:
                    got = acc[:, :ref_cols].cpu()
                    exact[name] = bool(torch.equal(got.view(torch.int32), reference.view(torch.int32)))
        del acc, reference
        for name in kernels:
            result["runs"].append(_row(epochs, name, times[name], cells, bw, exact[name]))
        if not args.skip_store:
            base = args.workdir / f"journal_e{epochs}.zarr"
            build_store(base, n, p, signed, ids, counts)
            base_no_index = args.workdir / f"journal_e{epochs}_no_topk.zarr"
            build_store(base_no_index, n, p, signed, ids, counts, topk=0)
            no_index: list[float] = []
            store_kernels = {name: kernels[name] for name in (REFERENCE, LIBRARY, LIBRARY_1T) if name in kernels}
            reports: dict[str, list[FoldReport]] = {name: [] for name in store_kernels}
            inside: dict[str, list[float]] = {name: [] for name in store_kernels}
            folded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            r_bytes = 2 * 4 * n * p
            # The bits every store.fold() must give: the replaced kernel's fold on the CPU, where it is chronological.
            _, _, ref_store = time_store_fold(base, args.workdir / "work.zarr", plain_index_add, torch.device("cpu"))
            ref_pos, ref_neg = ref_store.read("w", "pos"), ref_store.read("w", "neg")
            writes: list[float] = []
            for _ in range(args.store_repeats):
                for name, kernel in store_kernels.items():
                    writes.append(sequential_write(args.workdir, r_bytes))
                    report, kernel_seconds, store = time_store_fold(base, args.workdir / "work.zarr", kernel, device)
                    reports[name].append(report)
                    inside[name].append(kernel_seconds)
                    folded.setdefault(name, (store.read("w", "pos"), store.read("w", "neg")))
                    if name == LIBRARY:
                        plain, _, _ = time_store_fold(base_no_index, args.workdir / "work.zarr", kernel, device)
                        no_index.append(plain.seconds)
            write_gbps = r_bytes / median(writes) / 1e9
            result["sequential_write"] = {"epochs": epochs, "bytes": r_bytes, "seconds": writes}
            print(f"{'':>6} plain sequential write of R's {r_bytes / 1e6:.0f} MB: median {write_gbps:.2f} GB/s")
            for name in store_kernels:
                pos, neg = folded[name]
                same = bool(np.array_equal(pos.view(np.int32), ref_pos.view(np.int32)))
                same &= bool(np.array_equal(neg.view(np.int32), ref_neg.view(np.int32)))
                totals = [r.seconds for r in reports[name]]
                store_cells = reports[name][0].cells
                # store.fold() folds R_pos and R_neg: two accumulator updates per journaled (example, weight).
                rec = _row(epochs, f"store.fold(), {name}", totals, 2 * store_cells, bw, same)
                rec["kernel_seconds"] = inside[name]
                rec["topk_seconds"] = [r.topk_seconds for r in reports[name]]
                rec["store_cells_per_second"] = store_cells / median(totals)
                rec["r_gbps_median"] = r_bytes / median(totals) / 1e9
                rec["fraction_of_sequential_write"] = rec["r_gbps_median"] / write_gbps
                rec["topk_fraction_of_fold"] = median(rec["topk_seconds"]) / median(totals)
                added = ""
                if name == LIBRARY:
                    rec["fold_without_topk_seconds"] = no_index
                    rec["topk_added_fraction_of_fold"] = 1 - median(no_index) / median(totals)
                    added = (
                        f"; without the index the fold takes {median(no_index):.3f} s: the index adds "
                        f"{100 * rec['topk_added_fraction_of_fold']:.0f}% of the fold's time"
                    )
                print(
                    f"{'':>6} {'  of which in the kernel':<52} {min(inside[name]):>8.3f} {median(inside[name]):>8.3f}\n"
                    f"{'':>6} {'  of which ranking the top-k index':<52} {min(rec['topk_seconds']):>8.3f} "
                    f"{median(rec['topk_seconds']):>8.3f}\n"
                    f"{'':>6}   {store_cells / median(totals) / 1e9:.3f} Gcells/s, "
                    f"{rec['r_gbps_median']:.2f} GB/s of R written = "
                    f"{100 * rec['fraction_of_sequential_write']:.0f}% of the sequential write; "
                    f"top-k {100 * rec['topk_fraction_of_fold']:.0f}% of the fold{added}"
                )
                result["runs"].append(rec)
            shutil.rmtree(args.workdir / "work.zarr", ignore_errors=True)
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(base_no_index, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")


def median(xs: list[float]) -> float:
    return statistics.median(xs)


HEADER = (
    f"{'epochs':>6} {'variant':<52} {'best s':>8} {'median s':>8} {'Mcells/s':>9} {'bound %':>7} {'median %':>8} exact"
)


def _row(epochs: int, name: str, times: list[float], cells: int, bw: list[float], exact: bool) -> dict:
    """One printed and recorded line: best and median time, both against the best copy bandwidth of the workload.

    The best copy is the machine's bound; a median copy taken while other processes ran would flatter the kernel.
    """
    best, med = min(times), median(times)
    best_fraction = cells * 8 / best / 1e9 / max(bw)
    median_fraction = cells * 8 / med / 1e9 / max(bw)
    print(
        f"{epochs:>6} {name[:52]:<52} {best:>8.3f} {med:>8.3f} {cells / best / 1e6:>9.0f} {100 * best_fraction:>6.0f}% "
        f"{100 * median_fraction:>7.0f}% {'yes' if exact else 'NO'}"
    )
    return {
        "epochs": epochs,
        "variant": name,
        "seconds": times,
        "cells": cells,
        "cells_per_second_best": cells / best,
        "cells_per_second_median": cells / med,
        "fraction_of_copy_bandwidth_best": best_fraction,
        "fraction_of_copy_bandwidth_median": median_fraction,
        "bit_identical_to_chronological_cpu_fold": exact,
    }


if __name__ == "__main__":
    main()
