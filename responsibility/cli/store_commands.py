"""Store commands: ``inspect``, ``fold``, ``top`` and ``groups`` (they need only the store)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from responsibility.choices import SIGNS
from responsibility.store import ResponsibilityStore


def register(sub: Any) -> None:
    """Add the store commands to the ``responsibility`` parser's subcommands."""
    p = sub.add_parser("inspect", help="show what a store recorded: examples, steps, parameters, sizes")
    p.add_argument("store", help="path or URL of the store")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("fold", help="fold the journal into R and build the top-k index (out of core)")
    p.add_argument("store", help="path or URL of the store")
    p.add_argument("--param", action="append", help="fold only this parameter (repeatable); default all")
    p.add_argument("--budget-mb", type=float, default=1024, help="memory budget of the fold (default 1024)")
    p.set_defaults(func=cmd_fold)

    p = sub.add_parser("top", help="most responsible training examples of given weights or units")
    p.add_argument("store", help="path or URL of the store")
    p.add_argument("--param", required=True, help="parameter name, e.g. fc2.weight")
    p.add_argument("--weights", nargs="*", help="weights as multi-indices '3,17' or flat indices (default: first 5)")
    p.add_argument("-k", type=int, default=5, help="examples per weight (default 5)")
    p.add_argument("--sign", choices=SIGNS, default="abs", help="which R to rank by")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("groups", help="R of a parameter summed per training class (needs labels in the store)")
    p.add_argument("store", help="path or URL of the store")
    p.add_argument("--param", required=True, help="parameter name, e.g. net.fc2.weight")
    p.add_argument("--sign", choices=SIGNS, default="abs", help="which R to sum")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_groups)


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def cmd_inspect(args: argparse.Namespace) -> int:
    store = ResponsibilityStore.open(args.store)
    info = store.summary()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"store        {info['path']}")
    print(f"examples     {info['num_examples']}   labels: {'yes' if info['labels'] else 'no'}")
    print(f"steps        {info['steps']} optimizer steps, {info['ids']} example visits")
    print(f"settings     batch_share={info['batch_share']} attribution={info['attribution']}")
    print(f"{'parameter':<32} {'shape':<16} {'granularity':<11} {'columns':>9} {'folded':>7} {'R size':>10}")
    for p in info["parameters"]:
        shape = "x".join(map(str, p["shape"])) or "scalar"
        folded = f"{p['folded_steps']}/{info['steps']}"
        print(
            f"{p['name']:<32} {shape:<16} {p['granularity']:<11} {p['columns']:>9} {folded:>7} "
            f"{_format_bytes(p['r_bytes']):>10}"
        )
    return 0


def cmd_fold(args: argparse.Namespace) -> int:
    store = ResponsibilityStore.open(args.store, mode="r+")
    report = store.fold(args.param or None, budget_bytes=int(args.budget_mb * 2**20))
    print(
        f"folded {len(report.parameters)} parameter(s) over {report.steps} steps: {report.cells:.3g} cells "
        f"in {report.seconds:.2f} s ({report.cells_per_second / 1e9:.3f} Gcells/s)"
    )
    return 0


def _parse_index(text: str, shape: tuple[int, ...]) -> int:
    """``"3,4"`` (a multi-index) or ``"27"`` (a flat index) -> flat index."""
    parts = [int(x) for x in text.split(",")]
    if len(parts) == 1:
        flat = parts[0]
    else:
        if len(parts) != len(shape):
            raise ValueError(f"index {text!r} has {len(parts)} dims; the parameter's R has shape {shape}")
        if any(not 0 <= i < n for i, n in zip(parts, shape, strict=True)):
            raise ValueError(f"index {text!r} is outside the parameter's R shape {shape}")
        flat = int(np.ravel_multi_index(parts, shape))
    total = int(np.prod(shape))
    if not 0 <= flat < total:
        raise ValueError(f"index {text!r} is outside a parameter of {total} columns")
    return flat


def cmd_top(args: argparse.Namespace) -> int:
    store = ResponsibilityStore.open(args.store)
    p = store.param(args.param)
    ids, vals = store.most_responsible(args.param, k=args.k, sign=args.sign)
    ids, vals = ids.reshape(args.k, -1), vals.reshape(args.k, -1)
    labels = store.labels
    flat = [_parse_index(w, p.r_shape) for w in args.weights] if args.weights else list(range(min(p.units, 5)))
    rows = []
    for f in flat:
        index = tuple(int(i) for i in np.unravel_index(f, p.r_shape))
        for rank in range(args.k):
            ex = int(ids[rank, f])
            rows.append(
                {
                    "parameter": args.param,
                    "index": list(index),
                    "rank": rank + 1,
                    "example": ex,
                    "label": None if labels is None else int(labels[ex]),
                    "value": float(vals[rank, f]),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'weight':<16} {'rank':>4} {'example':>8} {'label':>6} {args.sign + ' R':>14}")
    for r in rows:
        label = "-" if r["label"] is None else str(r["label"])
        print(f"{str(tuple(r['index'])):<16} {r['rank']:>4} {r['example']:>8} {label:>6} {r['value']:>14.6g}")
    return 0


def cmd_groups(args: argparse.Namespace) -> int:
    from responsibility.analysis.groups import class_share, group_responsibility, resolve_groups

    store = ResponsibilityStore.open(args.store)
    p = store.param(args.param)
    blocks: list[int] = []

    def progress(done: int, total: int) -> None:
        blocks.append(done)
        if len(blocks) > 1 or done < total:  # only work that takes several blocks is worth reporting
            print(f"  {done}/{total} columns", file=sys.stderr)

    sums = group_responsibility(store, args.param, sign=args.sign, progress=progress)
    per_class = sums.reshape(sums.shape[0], -1).sum(1)
    share = class_share(store, args.param, level="layer", sign=args.sign) if per_class.sum() > 0 else per_class
    counts = np.bincount(resolve_groups(store, None, None)[0], minlength=len(per_class))
    rows = [
        {"class": c, "examples": int(counts[c]), "R": float(per_class[c]), "share": float(share[c])}
        for c in range(len(per_class))
    ]
    if args.json:
        print(json.dumps({"parameter": p.name, "sign": args.sign, "classes": rows}, indent=2))
        return 0
    print(f"{p.name}: R ({args.sign}) summed over each class's training examples and all {p.units} columns")
    print(f"{'class':>5} {'examples':>8} {'R':>14} {'share':>7}")
    for r in rows:
        print(f"{r['class']:>5} {r['examples']:>8} {r['R']:>14.6g} {r['share']:>7.1%}")
    return 0
