"""Store commands: ``inspect``, ``fold``, ``top`` and ``groups`` (they need only the store)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from responsibility.choices import SIGNS
from responsibility.cli.run_dir import store_location
from responsibility.store import ResponsibilityStore

EXAMPLE_PARAM = "net.fc2.weight"
STORE_HELP = "path or URL of the store, or a Hydra run directory (its callback's store, RUN_DIR/responsibility.zarr)"


def register(sub: Any) -> None:
    """Add the store commands to the ``responsibility`` parser's subcommands."""
    p = sub.add_parser("inspect", help="show what a store recorded: examples, steps, parameters, sizes")
    p.add_argument("store", help=STORE_HELP)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "fold",
        help="fold the journal into R and build the top-k index (out of core)",
        description="Sums the journal into stored R (both signs) and its top-k index, one parameter at a time: "
        "each finished parameter is committed, so Ctrl-C keeps them. Queries work without a fold (they read the "
        "journal for the columns they need); a fold makes repeated whole-parameter reads fast.",
    )
    p.add_argument("store", help=STORE_HELP)
    p.add_argument("--param", action="append", help="fold only this parameter (repeatable); default all")
    p.add_argument(
        "--budget-mb",
        type=float,
        default=1024,
        help="memory for R blocks and journal reads, in MiB (default 1024); peak RSS stays within it plus about "
        "380 MiB of interpreter, libraries and allocator caches",
    )
    p.set_defaults(func=cmd_fold)

    p = sub.add_parser("top", help="most responsible training examples of given weights or units")
    p.add_argument("store", help=STORE_HELP)
    p.add_argument("--param", required=True, help=f"parameter name as recorded, e.g. {EXAMPLE_PARAM}")
    p.add_argument("--weights", nargs="*", help="weights as multi-indices '3,17' or flat indices (default: first 5)")
    p.add_argument("-k", type=int, default=5, help="examples per weight (default 5)")
    p.add_argument("--sign", choices=SIGNS, default="abs", help="which R to rank by")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("groups", help="R of a parameter summed per training class (needs labels in the store)")
    p.add_argument("store", help=STORE_HELP)
    p.add_argument("--param", required=True, help=f"parameter name as recorded, e.g. {EXAMPLE_PARAM}")
    p.add_argument("--sign", choices=SIGNS, default="abs", help="which R to sum")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_groups)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def cmd_inspect(args: argparse.Namespace) -> int:
    store = ResponsibilityStore.open(store_location(args.store))
    info = store.summary()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    names = info["class_names"]
    print(f"store        {info['path']}")
    print(f"examples     {info['num_examples']}   labels: {'yes' if info['labels'] else 'no'}")
    if names:
        print(f"classes      {len(names)}: {', '.join(names)}")
    print(f"steps        {info['steps']} optimizer steps, {info['ids']} example visits")
    print(f"settings     batch_share={info['batch_share']} attribution={info['attribution']}")
    lay = info["layout"]
    index = f"depth {lay['topk']}, of {' '.join(lay['topk_signs'])}" if lay["topk"] else "none"
    journal = lay["journal_dtype"] + (" (derived Δw)" if lay["journal_delta"] == "derived" else "")
    print(f"storage      codec={lay['codec']} journal={journal} R={lay['r_dtype']}; top-k index: {index}")
    derived = [p for p in info["parameters"] if p.get("example_form") is not None and "derived_steps" in p]
    if derived:
        cells = sum(p["derived_steps"] for p in derived)
        print(
            f"derived Δw   {cells} of {len(derived) * info['steps']} parameter steps journaled c with Δw = c · Σ_j g_j "
            "(plain SGD); the others journal Δw"
        )
    print(f"{'parameter':<32} {'shape':<16} {'granularity':<11} {'columns':>9} {'folded':>7} {'R size':>10}")
    for p in info["parameters"]:
        shape = "x".join(map(str, p["shape"])) or "scalar"
        folded = f"{p['folded_steps']}/{info['steps']}"
        print(
            f"{p['name']:<32} {shape:<16} {p['granularity']:<11} {p['columns']:>9} {folded:>7} "
            f"{format_bytes(p['r_bytes']):>10}"
        )
    if info["orphans"]:
        print(
            f"unfinished fold generations (left by an interrupted fold; the next `responsibility fold` removes "
            f"them): {', '.join(info['orphans'])}"
        )
    return 0


def cmd_fold(args: argparse.Namespace) -> int:
    store = ResponsibilityStore.open(store_location(args.store), mode="r+")
    plan = store.fold_plan(args.param or None)
    if not plan.parameters:
        print(f"nothing to fold: every selected parameter's R covers all {store.steps} steps")
        if store.orphans():
            store.fold(args.param or None)  # still removes what an interrupted fold left behind
        return 0
    print(
        f"folding {len(plan.parameters)} parameter(s) over {store.steps} steps: {plan.cells:.3g} cell updates; "
        f"writes {format_bytes(plan.r_bytes)} of R and {format_bytes(plan.topk_bytes)} of top-k index "
        f"(before compression), about {plan.estimated_seconds:.0f} s on a 2-core machine",
        flush=True,
    )
    report = store.fold(args.param or None, budget_bytes=int(args.budget_mb * 2**20))
    print(
        f"folded {len(plan.parameters)} parameter(s) over {report.steps} steps: {report.cells:.3g} cells "
        f"in {report.seconds:.2f} s ({report.cells_per_second / 1e9:.3f} Gcells/s, "
        f"{report.r_bytes / max(report.seconds, 1e-9) / 1e9:.2f} GB/s of R)"
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
    store = ResponsibilityStore.open(store_location(args.store))
    p = store.param(args.param)
    flat = [_parse_index(w, p.r_shape) for w in args.weights] if args.weights else list(range(min(p.units, 5)))
    # Only the asked columns: from the top-k index when current, else from their journal columns.
    ids, vals = store.most_responsible(args.param, k=args.k, sign=args.sign, weights=flat)
    labels = store.labels
    rows = []
    for j, f in enumerate(flat):
        index = tuple(int(i) for i in np.unravel_index(f, p.r_shape))
        for rank in range(args.k):
            ex = int(ids[rank, j])
            label = None if labels is None else int(labels[ex])
            rows.append(
                {
                    "parameter": args.param,
                    "index": list(index),
                    "rank": rank + 1,
                    "example": ex,
                    "label": label,
                    "class": None if label is None else store.class_name(label),
                    "value": float(vals[rank, j]),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'weight':<16} {'rank':>4} {'example':>8} {'class':>14} {args.sign + ' R':>14}")
    for r in rows:
        name = "-" if r["class"] is None else r["class"]
        print(f"{str(tuple(r['index'])):<16} {r['rank']:>4} {r['example']:>8} {name:>14} {r['value']:>14.6g}")
    return 0


def cmd_groups(args: argparse.Namespace) -> int:
    from responsibility.analysis.groups import group_responsibility, resolve_groups

    store = ResponsibilityStore.open(store_location(args.store))
    p = store.param(args.param)
    sums = group_responsibility(store, args.param, sign=args.sign)
    per_class = sums.reshape(sums.shape[0], -1).sum(1)
    # class_share(level="layer") of the same sums, without reading R a second time.
    total = per_class.sum()
    share = per_class / total if total > 0 else np.zeros_like(per_class)
    counts = np.bincount(resolve_groups(store, None, None)[0], minlength=len(per_class))
    rows = [
        {
            "class": c,
            "name": store.class_name(c),
            "examples": int(counts[c]),
            "R": float(per_class[c]),
            "share": float(share[c]),
        }
        for c in range(len(per_class))
    ]
    if args.json:
        print(json.dumps({"parameter": p.name, "sign": args.sign, "classes": rows}, indent=2))
        return 0
    print(f"{p.name}: R ({args.sign}) summed over each class's training examples and all {p.units} columns")
    print(f"{'class':>5} {'name':<16} {'examples':>8} {'R':>14} {'share':>7}")
    for r in rows:
        print(f"{r['class']:>5} {r['name']:<16} {r['examples']:>8} {r['R']:>14.6g} {r['share']:>7.1%}")
    return 0
