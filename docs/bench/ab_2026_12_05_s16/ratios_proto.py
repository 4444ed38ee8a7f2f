"""parts_prof.py with a prototype of the per-unit shares' ratios in 4 operations instead of 6 (the division, one dot
product for the operands' finiteness, NaN zeroed, one aminmax), against today's ("old"). Not kept: no faster.

    python docs/bench/ab_2026_12_05_s16/ratios_proto.py old
    python docs/bench/ab_2026_12_05_s16/ratios_proto.py proto
"""

import runpy
import sys
from pathlib import Path

import torch

import responsibility.recording.unit_shares as us

_INF = float("inf")
orig = us._ratios


def proto(delta, denom, n, spare):
    scale = torch.div(delta, denom, out=spare) if spare is not None else delta / denom
    if bool(torch.isfinite(torch.dot(delta.reshape(-1), denom.reshape(-1)))):
        bounds = torch.aminmax(scale.nan_to_num_(nan=0.0, posinf=_INF, neginf=-_INF))
        if us._finite(bounds):
            return scale, bounds, None
    return orig(delta, denom, n, spare)  # (prototype: recomputes; never taken in this benchmark)


if sys.argv[1] == "proto":
    us._ratios = proto
sys.argv = [sys.argv[0], "--fits", "3"]
runpy.run_path(str(Path(__file__).with_name("parts_prof.py")), run_name="__main__")
