"""Fused fold kernel variants on CUDA: block width, warps, a grid over example segments only; groups as store.fold
passes them (one call per epoch block) and as bench_fold passed them (8,192 ids). Fractions as bench_fold's: cells x 8
bytes against the best copy of the same run.

As run on the H200 (dev3.sh), against scripts/bench_fold.py of a442166, whose kernel_groups() took no step blocks;
reformatted for the linter since."""

import json
import sys
import time

import numpy as np
import torch
import triton
import triton.language as tl

sys.path.insert(0, "scripts")
import bench_fold as bf

from responsibility.kernels._triton_fold_kernel import fold_kernel
from responsibility.kernels.triton_fold import fused_fold


@triton.jit
def seg_kernel(
    acc_ptr,
    rows_ptr,
    ids_ptr,
    starts_ptr,
    ends_ptr,
    steps_ptr,
    col_blocks,
    width,
    acc_stride,
    rows_stride,
    BLOCK_P: tl.constexpr,
):
    pid = tl.program_id(0)
    s = pid // col_blocks
    cols = (pid % col_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    i = tl.load(starts_ptr + s)
    end = tl.load(ends_ptr + s)
    example = tl.load(ids_ptr + i)
    mask = cols < width
    cell = example.to(tl.int64) * acc_stride + cols
    total = tl.load(acc_ptr + cell, mask=mask)
    for k in range(i, end):
        row = tl.load(rows_ptr + tl.load(steps_ptr + k).to(tl.int64) * rows_stride + cols, mask=mask)
        total += row
    tl.store(acc_ptr + cell, total, mask=mask)


def base_variant(block, warps):
    def run(acc, rows, ids, row_of_id):
        n, width = acc.shape
        lo_id, hi_id, lo_row, hi_row = torch.cat(
            [torch.stack(torch.aminmax(ids)), torch.stack(torch.aminmax(row_of_id))]
        ).tolist()
        sorted_ids, order = torch.sort(ids, stable=True)
        ends = torch.searchsorted(sorted_ids, sorted_ids, right=True)
        col_blocks = -(-width // block)
        fold_kernel[(len(ids) * col_blocks,)](
            acc,
            rows,
            rows,
            sorted_ids,
            ends,
            row_of_id[order],
            col_blocks,
            width,
            acc.stride(0),
            rows.stride(0),
            HAS_SCALE=False,
            BLOCK_P=block,
            num_warps=warps,
            enable_fp_fusion=False,
        )

    return run


def seg_variant(block, warps):
    def run(acc, rows, ids, row_of_id):
        n, width = acc.shape
        sorted_ids, order = torch.sort(ids, stable=True)
        first = torch.ones(len(ids), dtype=torch.bool, device=ids.device)
        first[1:] = sorted_ids[1:] != sorted_ids[:-1]
        lo_id, hi_id, lo_row, hi_row, segs = torch.cat(
            [torch.stack(torch.aminmax(ids)), torch.stack(torch.aminmax(row_of_id)), first.sum().view(1)]
        ).tolist()
        starts = torch.nonzero_static(first, size=segs).view(-1)
        ends = torch.empty_like(starts)
        ends[:-1] = starts[1:]
        ends[-1] = len(ids)
        col_blocks = -(-width // block)
        seg_kernel[(segs * col_blocks,)](
            acc,
            rows,
            sorted_ids,
            starts,
            ends,
            row_of_id[order],
            col_blocks,
            width,
            acc.stride(0),
            rows.stride(0),
            BLOCK_P=block,
            num_warps=warps,
            enable_fp_fusion=False,
        )

    return run


def main():
    import os

    dev = torch.device(os.environ.get("DEV", "cuda"))
    n, p, batch = int(os.environ.get("N", 100_000)), int(os.environ.get("P", 8192)), 64
    variants = {"library fused_fold": lambda a, r, i, ro: fused_fold(a, r, i, ro)}
    for block in (512, 1024, 2048, 4096):
        for warps in (2, 4, 8):
            if block // (32 * warps) < 1 or block // (32 * warps) > 32:
                continue
            variants[f"base B{block} w{warps}"] = base_variant(block, warps)
            variants[f"seg B{block} w{warps}"] = seg_variant(block, warps)
    out = {"runs": []}
    for epochs in (1, 3):
        ids, counts = bf.membership(n, batch, epochs, 0)
        rows = torch.from_numpy(np.abs(bf.journal_rows(len(counts), p, 0.3, 0))).to(dev)
        cells = int(counts.sum()) * p
        bw = max(bf.copy_bandwidth(2.0 if dev.type == "cuda" else 0.01, 5, dev))
        acc = torch.zeros(n, p, device=dev)
        ref = None
        for mode, max_ids in (("one call", 1 << 40), ("8192-id groups", 8192)):
            groups = [(i.to(dev), r.to(dev)) for i, r in bf.kernel_groups(ids, counts, max_ids)]
            for name, fn in variants.items():
                if mode != "one call" and not name.startswith(
                    ("library", "base B1024 w4", "seg B1024 w4", "seg B2048")
                ):
                    continue
                try:
                    times = []
                    for rep in range(6):
                        acc.zero_()
                        bf.sync(dev)
                        t0 = time.perf_counter()
                        for i, r in groups:
                            fn(acc, rows, i, r)
                        bf.sync(dev)
                        times.append(time.perf_counter() - t0)
                        if rep == 0:
                            got = acc[:, :512].cpu().clone()
                            if ref is None:
                                ref = got
                            same = torch.equal(got.view(torch.int32), ref.view(torch.int32))
                    t = sorted(times[1:])
                    med = t[len(t) // 2]
                    row = dict(
                        epochs=epochs,
                        mode=mode,
                        variant=name,
                        groups=len(groups),
                        best_s=t[0],
                        median_s=med,
                        frac_best=cells * 8 / t[0] / 1e9 / bw,
                        frac_median=cells * 8 / med / 1e9 / bw,
                        same_bits=same,
                        copy_gbps=bw,
                    )
                except Exception as exc:
                    row = dict(epochs=epochs, mode=mode, variant=name, error=repr(exc)[:300])
                out["runs"].append(row)
                print(json.dumps(row), flush=True)
        del acc
    json.dump(out, open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/kernel_sweep.json", "w"), indent=1)


main()
