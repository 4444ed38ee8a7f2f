"""Paired medians of fitend_ab.jsonl / fold_ab.jsonl: ``python summarize.py fitend_ab.jsonl``."""

import json
import statistics
import sys

with open(sys.argv[1]) as f:
    rows = [json.loads(line) for line in f]
medians: dict[str, list[float]] = {"old": [], "new": []}
for row in rows:
    runs = row["runs"][1:]  # the first fold of a process is dropped
    folds = [1e3 * x["fold"] for x in runs]
    medians[row["tag"]].append(statistics.median(folds))
    print(row["tag"], f"fold median {statistics.median(folds):.0f} ms ({' '.join(f'{t:.0f}' for t in folds)})")
ratios = [new / old for old, new in zip(medians["old"], medians["new"], strict=True)]
print("paired ratios new/old:", " ".join(f"{r:.2f}" for r in ratios), f"median {statistics.median(ratios):.2f}")
