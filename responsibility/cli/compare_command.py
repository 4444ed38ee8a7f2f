"""The ``compare`` command: two runs on the same test set, e.g. before and after a curation, or two seeds."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    """Add the ``compare`` command to the ``responsibility`` parser's subcommands."""
    p = sub.add_parser(
        "compare",
        help="compare two runs: accuracy, fixed and broken test predictions, how curated examples moved",
        description="Compare run B against run A (Hydra run directories of scripts/train.py on the same data).",
    )
    p.add_argument("run_a", metavar="RUN_A", help="the reference run (e.g. before a curation)")
    p.add_argument("run_b", metavar="RUN_B", help="the run to compare with it (e.g. retrained with the curation)")
    p.add_argument("--json", action="store_true", help="print the whole comparison as JSON")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from responsibility.explorer.run import Run
    from responsibility.explorer.views import compare

    a, b = Run(args.run_a), Run(args.run_b)
    doc = compare(a, b, None)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    names = a.class_names
    table = doc["table"]
    print(f"A  {a.dir}\n   test accuracy {doc['accuracy_a']:.4f}")
    print(f"B  {b.dir}\n   test accuracy {doc['accuracy_b']:.4f} ({doc['accuracy_b'] - doc['accuracy_a']:+.4f})")
    print(f"\n{'class':<16} {'inputs':>6} {'A':>7} {'B':>7} {'B - A':>7}")
    for c, name in enumerate(names):
        acc_a, acc_b = doc["per_class_a"][c], doc["per_class_b"][c]
        if acc_a is None or acc_b is None:
            continue
        print(f"{name[:16]:<16} {doc['counts'][c]:>6} {acc_a:>7.3f} {acc_b:>7.3f} {acc_b - acc_a:>+7.3f}")
    print(f"\nboth right {table[0][0]}, fixed by B {table[1][0]}, broken by B {table[0][1]}, both wrong {table[1][1]}")
    for key, title in (("fixed", "fixed (wrong in A, right in B)"), ("broken", "broken (right in A, wrong in B)")):
        rows = doc[key][:10]
        if rows:
            print(f"\n{title}: test input, true class, A's and B's prediction")
            for row in rows:
                print(f"  {row['index']:>6}  {names[row['true']]:<14} {names[row['a']['predicted']]:<14} "
                      f"{names[row['b']['predicted']]:<14}")  # fmt: skip
    if doc["curated"]:
        removed = sum(1 for c in doc["curated"] if c["removed"])
        relabelled = sum(1 for c in doc["curated"] if c["label_a"] != c["label_b"])
        print(f"\ncurated for B: {len(doc['curated'])} examples ({relabelled} relabelled, {removed} removed)")
        for name, shift in doc.get("shifts", {}).items():
            pa, pb = shift["percentile_a"], shift["percentile_b"]
            print(f"  {name:<20} mean percentile in A {sum(pa) / len(pa):.3f} -> in B {sum(pb) / len(pb):.3f}")
    return 0
