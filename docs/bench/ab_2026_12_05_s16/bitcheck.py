"""Fold a copy of an unfolded defaults store with the old ``shares`` and with today's, and compare every parameter's
R_pos and R_neg bit for bit (as uint32).

    python docs/bench/ab_2026_12_05_s16/bitcheck.py STORE
"""

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import responsibility.store._accumulate as acc_mod
from responsibility import ResponsibilityStore


def old_shares(delta, grads, row_of_id, counts, rule):
    weight = grads.abs() if rule == "magnitude" else grads
    denom = torch.zeros_like(delta).index_add_(0, row_of_id, weight)
    scale = delta / denom
    usable = torch.isfinite(scale)
    scale = torch.where(usable, scale, torch.zeros((), dtype=scale.dtype))
    even = torch.where(usable, torch.zeros((), dtype=delta.dtype), delta / counts.to(delta.dtype).unsqueeze(1))
    return scale[row_of_id].mul_(weight).add_(even[row_of_id])


NEW = acc_mod.shares
tmp = Path(tempfile.mkdtemp())
out = {}
for name, f in [("old", old_shares), ("new", NEW)]:
    acc_mod.shares = f
    copy = tmp / name
    shutil.copytree(sys.argv[1], copy)
    s = ResponsibilityStore.open(copy, mode="r+")
    s.fold()
    out[name] = {p: (s.read(p, sign="pos"), s.read(p, sign="neg")) for p in s.parameters}
for p in out["old"]:
    for i in range(2):
        a, b = out["old"][p][i], out["new"][p][i]
        print(p, i, np.array_equal(a.view(np.uint32), b.view(np.uint32)))
shutil.rmtree(tmp)
