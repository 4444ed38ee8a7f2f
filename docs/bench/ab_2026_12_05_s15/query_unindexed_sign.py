"""``most_responsible`` of fc2's weights (k=5) on a folded store of the callback defaults, by sign: R_abs from the
top-k index, R_pos and R_neg (not indexed since format 3) from R's columns; the whole parameter and 5 weights, each on a
freshly opened store, 6 rounds, the first dropped.

    python docs/bench/ab_2026_12_05_s15/query_unindexed_sign.py STORE
"""

from __future__ import annotations

import statistics
import sys
import time

from responsibility import ResponsibilityStore


def main() -> None:
    path = sys.argv[1]
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(6):
        for sign in ("abs", "pos", "neg"):
            for what, weights in (("whole parameter", None), ("5 weights", [0, 1, 2, 3, 4])):
                store = ResponsibilityStore.open(path)
                t = time.perf_counter()
                store.most_responsible("net.fc2.weight", 5, sign, weights=weights)  # type: ignore[arg-type]
                times.setdefault((sign, what), []).append(time.perf_counter() - t)
    for (sign, what), ts in times.items():
        print(f"{sign}, {what}: median {1e3 * statistics.median(ts[1:]):.1f} ms {[round(1e3 * t, 1) for t in ts[1:]]}")


if __name__ == "__main__":
    main()
