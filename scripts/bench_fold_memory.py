"""Peak RSS of ``responsibility fold --budget-mb B`` against its budget (issue 12's memory promise).

Builds a journal-only store (``--examples`` x ``--columns`` weights, one epoch of batch 64, as in
``bench_fold.py``). Its peak RSS is then taken from ``/usr/bin/time -v``: once for ``responsibility inspect``
(interpreter, libraries and an open store: the constant part), and once for a fold of a fresh copy at each budget.

    python scripts/bench_fold_memory.py --budgets 256 1024 --out docs/bench/fold_memory.json
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path

from bench_fold import build_store, journal_rows, membership


def peak_rss(command: list[str]) -> tuple[int, str]:
    """Peak RSS in bytes of ``command`` (by ``/usr/bin/time -v``) and its standard output."""
    run = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=True)
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    return kib * 1024, run.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--columns", type=int, default=131072)
    ap.add_argument("--budgets", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--workdir", type=Path, default=Path("outputs/bench/fold_memory"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    base, work = args.workdir / "base.zarr", args.workdir / "work.zarr"
    ids, counts = membership(args.examples, 64, 1, 0)
    build_store(base, args.examples, args.columns, journal_rows(len(counts), args.columns, 0.3, 0), ids, counts)
    constant, _ = peak_rss(["responsibility", "--quiet", "inspect", str(base)])
    result = {
        "examples": args.examples,
        "columns": args.columns,
        "r_bytes": 2 * 4 * args.examples * args.columns,
        "inspect_peak_rss": constant,
        "folds": [],
    }
    print(f"R {result['r_bytes'] / 1e9:.2f} GB; `responsibility inspect` peak RSS {constant / 2**20:.0f} MiB")
    for budget in args.budgets:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work)
        rss, out = peak_rss(["responsibility", "--quiet", "fold", str(work), "--budget-mb", str(budget)])
        over = rss - constant - budget * 2**20
        result["folds"].append({"budget_mb": budget, "peak_rss": rss, "above_budget_and_inspect": over, "log": out})
        print(f"--budget-mb {budget}: peak RSS {rss / 2**20:.0f} MiB ({over / 2**20:+.0f} MiB beyond budget + inspect)")
        print(out.strip().splitlines()[-1])
    shutil.rmtree(args.workdir, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
