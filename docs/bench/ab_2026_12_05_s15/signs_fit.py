"""``trainer.fit`` with the callback defaults (top-k index of R_abs only, since format 3) against the same with the
index of all three signs (``topk_signs=["abs", "pos", "neg"]``, what every fold built before), each over its own
baseline fit, alternating within every repeat. Runs ``scripts/bench_overhead.py`` with one more setting:

    flock /work/bench.lock python docs/bench/ab_2026_12_05_s15/signs_fit.py --data-dir ../shared/data/fashion-mnist \
        --repeats 6 --settings b_defaults b_defaults_three_signs --out docs/bench/ab_2026_12_05_s15/signs_fit.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import bench_overhead  # noqa: E402

from responsibility.choices import SIGNS  # noqa: E402

_, settings = bench_overhead.MODELS["paper_cnn"]
settings["b_defaults_three_signs"] = {**settings["b_defaults"], "topk_signs": SIGNS}

if __name__ == "__main__":
    bench_overhead.main(sys.argv[1:])
