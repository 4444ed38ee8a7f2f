"""A/B of the training overhead between two checkouts: ``bench_overhead.py`` run alternately from each, so drifts
in machine speed hit both alike; every ratio is still within one run (its own baseline).

    git worktree add ../before <commit>        # with its own venv, installed editable from there
    flock /work/bench.lock python scripts/bench_ab.py --old ../before --old-python ../venv-before/bin/python \\
        --rounds 6 --out docs/bench/ab -- --settings b_neurons_plus_last_layer b_defaults --repeats 2

Writes ``old_<i>.json`` / ``new_<i>.json`` (bench_overhead's output) and prints the medians over all repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def summarize(out: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Median wall and CPU ratios per version and setting over every repeat of every round."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for version in ("old", "new"):
        runs = [json.loads(p.read_text()) for p in sorted(out.glob(f"{version}_*.json"))]
        if not runs:
            continue
        result[version] = {
            name: {
                "wall_ratio_median": statistics.median(x for r in runs for x in r["settings"][name]["ratios"]),
                "cpu_ratio_median": statistics.median(x for r in runs for x in r["settings"][name]["cpu_ratios"]),
                "n": sum(len(r["settings"][name]["ratios"]) for r in runs),
            }
            for name in runs[0]["settings"]
        }
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="the other checkout's root")
    parser.add_argument("--old-python", required=True, help="a Python with the other checkout installed")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", required=True, help="directory for the JSON results")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then bench_overhead.py's arguments")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    extra = args.bench_args[1:] if args.bench_args[:1] == ["--"] else args.bench_args
    here = Path(__file__).resolve().parents[1]
    sides = {"old": (Path(args.old).resolve(), args.old_python), "new": (here, sys.executable)}
    for i in range(1, args.rounds + 1):
        for version, (root, python) in sides.items():
            (root / "outputs").mkdir(exist_ok=True)  # bench_overhead writes its stores there
            cmd = [python, "scripts/bench_overhead.py", *extra, "--out", str(out / f"{version}_{i}.json")]
            print(f"round {i}, {version}: {' '.join(cmd)}", flush=True)
            subprocess.run(cmd, cwd=root, check=True, stdout=subprocess.DEVNULL)
    summary = summarize(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for version, settings in summary.items():
        for name, s in settings.items():
            wall, cpu = s["wall_ratio_median"], s["cpu_ratio_median"]
            print(f"{version:<4} {name:<28} wall {wall:.2f}  CPU {cpu:.2f}  n={s['n']}")


if __name__ == "__main__":
    main()
