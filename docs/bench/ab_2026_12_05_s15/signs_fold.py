"""``store.fold()`` of a journal-only store with the top-k index of all three signs, of R_abs only (the default
since format 3), and with no index (``topk=0``); a fresh copy per fold, the three alternating, the first round
dropped. The copy's layout is set by rewriting its metadata (and digest).

    flock /work/bench.lock python docs/bench/ab_2026_12_05_s15/signs_fold.py STORE ROUNDS
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import zarr

from responsibility import ResponsibilityStore
from responsibility.store._format import metadata_digest
from responsibility.store.location import ATTR_KEY

MODES = {"all": {"topk_signs": ["abs", "pos", "neg"]}, "abs": {"topk_signs": ["abs"]}, "none": {"topk": 0}}


def set_layout(path: Path, fields: dict) -> None:
    group = zarr.open_group(path, mode="r+")
    meta = dict(group.attrs[ATTR_KEY])
    meta["format"] = 3
    meta["layout"] = {**meta["layout"], "topk_signs": ["abs"], **fields}
    meta["digest"] = metadata_digest(meta)
    group.attrs[ATTR_KEY] = meta


def main() -> None:
    source, rounds = sys.argv[1], int(sys.argv[2])
    res: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(dir=Path(source).parent) as tmp:
        for r in range(rounds):
            for mode, fields in MODES.items():
                copy = Path(tmp) / "f.zarr"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(source, copy)
                set_layout(copy, fields)
                report = ResponsibilityStore.open(copy, mode="r+").fold()
                if r:
                    res[mode].append((report.seconds, report.topk_seconds))
    none = statistics.median(x[0] for x in res["none"])
    for mode, rows in res.items():
        fold = statistics.median(x[0] for x in rows)
        ranking = statistics.median(x[1] for x in rows)
        print(
            f"{mode}: fold median {1e3 * fold:.0f} ms (index adds {100 * (fold / none - 1):.0f}%), "
            f"ranking median {1e3 * ranking:.0f} ms, folds {[round(1e3 * x[0]) for x in rows]}"
        )


if __name__ == "__main__":
    main()
