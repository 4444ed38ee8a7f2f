"""Fold throughput on the CPU: kernel variants alone, the full ``store.fold()`` path, and the memory-copy bound.

The membership is realistic: every example once per epoch in shuffled batches of ``--batch``; journal rows are
non-negative |Δw|-like values with ``--zero-fraction`` exact zeros. One run measures, on the same machine:

- memory copy bandwidth: ``dst.copy_(src)`` of a large preallocated float32 tensor, warm, counted as bytes read +
  bytes written;
- each fold kernel over all steps into an example-major (N, P) float32 accumulator, in the step groups that
  ``store.fold()`` uses, and whether its result is bit-identical to the library kernel's;
- ``store.fold()`` on a store written by the Recorder (one (P,) parameter, codec lz4), which also reads the journal,
  folds R_pos and R_neg, writes them and builds the top-k index.

Fold traffic is counted as 8 bytes per R cell updated (read + write of one float32 accumulator cell); the ratio of
that to the copy bandwidth says how close a kernel gets to the memory bound.

    python scripts/bench_fold.py --epochs 1 3 --out outputs/bench/fold.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from responsibility import Layout, ParamSpec, RecordingSpec, ResponsibilityStore
from responsibility.fold import FoldKernel, index_add_fold, step_groups
from responsibility.recorder import Recorder
from responsibility.store import DEFAULT_FOLD_BUDGET


def blocked_gather_index_add(block: int = 32) -> FoldKernel:
    """Library kernel in slices of ``block`` ids: the gathered source stays in cache. Same order of adds."""

    def kernel(acc, rows, ids, row_of_id, scale=None):
        for j0 in range(0, len(ids), block):
            j1 = min(len(ids), j0 + block)
            src = rows.index_select(0, row_of_id[j0:j1])
            if scale is not None:
                src.mul_(scale[j0:j1].unsqueeze(1))
            acc.index_add_(0, ids[j0:j1], src)

    return kernel


def per_step_expand(acc, rows, ids, row_of_id, scale=None):
    """One ``index_add_`` per step of the step's row broadcast (stride 0) to its ids: no gathered copy."""
    steps, counts = torch.unique_consecutive(row_of_id, return_counts=True)
    j0 = 0
    for t, c in zip(steps.tolist(), counts.tolist(), strict=True):
        src = rows[t : t + 1].expand(c, rows.shape[1])
        if scale is not None:
            src = src * scale[j0 : j0 + c].unsqueeze(1)
        acc.index_add_(0, ids[j0 : j0 + c], src)
        j0 += c


def gather_by_example(block: int = 64) -> FoldKernel:
    """Sort-free: when no id repeats within the group, ``acc[m] += rows[step_of[m]]`` for every example m.

    Each touched cell then gets exactly one addition, the same float operation as ``index_add_``, so the result is
    bit-identical. Examples not in the group add a zero row (``x + 0.0 == x`` for R >= 0). Groups with repeated ids
    or covering few examples fall back to the library kernel.
    """

    def kernel(acc, rows, ids, row_of_id, scale=None):
        n = acc.shape[0]
        if 2 * len(ids) < n or int(torch.bincount(ids, minlength=n).max()) > 1:
            index_add_fold(acc, rows, ids, row_of_id, scale)
            return
        src = rows
        if scale is not None:  # the mean share is one scale per step: scaling rows first is the same product
            step_scale = torch.zeros(len(rows))
            step_scale[row_of_id] = scale
            src = rows * step_scale.unsqueeze(1)
        src = torch.cat([src, src.new_zeros(1, src.shape[1])])
        step_of = torch.full((n,), len(rows), dtype=torch.int64)
        step_of[ids] = row_of_id
        for m0 in range(0, n, block):
            m1 = min(n, m0 + block)
            acc[m0:m1].add_(src.index_select(0, step_of[m0:m1]))

    return kernel


KERNELS: dict[str, FoldKernel] = {
    "library: gather + index_add_ (step groups)": index_add_fold,
    "gather + index_add_ in slices of 32 ids": blocked_gather_index_add(32),
    "per-step index_add_ of expand (no copy)": per_step_expand,
    "sort-free gather by example (unique ids)": gather_by_example(64),
}


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


def copy_bandwidth(gib: float, repeats: int) -> list[float]:
    """GB/s of ``dst.copy_(src)`` (read + write bytes), warm, one figure per repeat."""
    src = torch.ones(int(gib * 2**30) // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        out.append(2 * src.numel() * 4 / (time.perf_counter() - t0) / 1e9)
    return out


def run_kernel(
    kernel: FoldKernel, n: int, rows: torch.Tensor, ids: np.ndarray, counts: np.ndarray, max_ids: int
) -> tuple[float, torch.Tensor]:
    """Fold every step into a fresh accumulator in the step groups ``store.fold()`` uses; returns seconds, acc."""
    acc = torch.zeros(n, rows.shape[1])
    acc.add_(1.0).zero_()  # fault the pages in before timing
    counts_t = torch.from_numpy(counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    ids_t = torch.from_numpy(ids)
    t0 = time.perf_counter()
    for g0, g1 in step_groups(counts_t, max_ids):
        row_of_id = torch.repeat_interleave(torch.arange(g0, g1), counts_t[g0:g1])
        kernel(acc, rows, ids_t[offsets[g0] : offsets[g1]], row_of_id, None)
    return time.perf_counter() - t0, acc


def build_store(path: Path, n: int, cols: int, rows: np.ndarray, ids: np.ndarray, counts: np.ndarray) -> None:
    """A store whose journal holds exactly ``rows`` and the membership, written by the Recorder."""
    if path.exists():
        shutil.rmtree(path)
    spec = RecordingSpec((ParamSpec("w", (cols,)),), num_examples=n)
    store = ResponsibilityStore.create(path, spec, layout=Layout(chunk_steps=64))
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


def time_store_fold(base: Path, work: Path, kernel: FoldKernel) -> tuple[float, int, ResponsibilityStore]:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base, work)
    store = ResponsibilityStore.open(work, "r+")
    report = store.fold(kernel=kernel)
    return report.seconds, report.cells, store


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=10_000)
    ap.add_argument("--columns", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--zero-fraction", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copy-gib", type=float, default=1.0)
    ap.add_argument("--kernels", nargs="*", default=None, help="substrings of kernel names to run (default: all)")
    ap.add_argument("--skip-store", action="store_true", help="kernels only, no store.fold()")
    ap.add_argument("--workdir", type=Path, default=Path("outputs/bench/fold"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    n, p = args.examples, args.columns
    # store.fold()'s grouping for this width: at most this many ids gathered at once.
    max_ids = max(1, (DEFAULT_FOLD_BUDGET // 4) // (4 * p))
    bw = copy_bandwidth(args.copy_gib, max(3, args.repeats))
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "setup": {
            "examples": n,
            "columns": p,
            "batch": args.batch,
            "zero_fraction": args.zero_fraction,
            "max_ids_per_group": max_ids,
        },
        "copy_gbps": bw,
        "runs": [],
    }
    bound = median(bw)
    print(f"memory copy bandwidth: {', '.join(f'{x:.1f}' for x in bw)} GB/s (read+write), median {bound:.1f}")
    print(f"N={n} examples, P={p} columns, batch {args.batch}, {torch.get_num_threads()} torch threads")
    header = f"{'epochs':>6} {'variant':<44} {'s (median)':>10} {'Mcells/s':>9} {'GB/s':>6} {'bound %':>7} exact"
    print(header)
    print("-" * len(header))
    kernels = {k: v for k, v in KERNELS.items() if args.kernels is None or any(s in k for s in args.kernels)} or KERNELS
    for epochs in args.epochs:
        ids, counts = membership(n, args.batch, epochs, args.seed)
        signed = journal_rows(len(counts), p, args.zero_fraction, args.seed)
        rows = torch.from_numpy(np.abs(signed))
        cells = int(counts.sum()) * p
        reference = None
        for name, kernel in kernels.items():
            run_kernel(kernel, n, rows, ids, counts[: max(1, len(counts) // 8)], max_ids)  # warm-up
            times = []
            for _ in range(args.repeats):
                seconds, acc = run_kernel(kernel, n, rows, ids, counts, max_ids)
                times.append(seconds)
            if reference is None:
                reference = acc
            exact = bool(torch.equal(acc, reference))
            del acc
            rec = _row(epochs, name, times, cells, bound, exact)
            result["runs"].append(rec)
        if not args.skip_store:
            base = args.workdir / f"journal_e{epochs}.zarr"
            build_store(base, n, p, signed, ids, counts)
            folded = None
            for name, kernel in kernels.items():
                if "library" not in name and "sort-free" not in name:
                    continue
                times = []
                for _ in range(args.repeats):
                    seconds, store_cells, store = time_store_fold(base, args.workdir / "work.zarr", kernel)
                    times.append(seconds)
                pos = store.read("w", "pos")
                neg = store.read("w", "neg")
                if folded is None:
                    folded = (pos, neg)
                exact = bool(np.array_equal(pos, folded[0]) and np.array_equal(neg, folded[1]))
                # store.fold() folds R_pos and R_neg: two accumulator updates per journaled (example, weight).
                rec = _row(
                    epochs,
                    f"store.fold() with {name.split(':')[0].split(' (')[0]}",
                    times,
                    2 * store_cells,
                    bound,
                    exact,
                )
                rec["store_cells_per_second"] = store_cells / median(times)
                result["runs"].append(rec)
            shutil.rmtree(args.workdir / "work.zarr", ignore_errors=True)
            shutil.rmtree(base, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")


def _row(epochs: int, name: str, times: list[float], cells: int, bound: float, exact: bool) -> dict:
    t = median(times)
    gbps = cells * 8 / t / 1e9
    print(
        f"{epochs:>6} {name[:44]:<44} {t:>10.3f} {cells / t / 1e6:>9.0f} {gbps:>6.2f} {100 * gbps / bound:>6.0f}% "
        f"{'yes' if exact else 'NO'}"
    )
    return {
        "epochs": epochs,
        "variant": name,
        "seconds": times,
        "cells": cells,
        "cells_per_second": cells / t,
        "fold_gbps": gbps,
        "fraction_of_copy_bandwidth": gbps / bound,
        "bit_identical_to_library": exact,
    }


if __name__ == "__main__":
    main()
