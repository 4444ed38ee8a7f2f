"""``shares`` of a 29-step block of fc2-sized per-example gradients (64 examples a step, 1,280 weights), old (always
adds the evenly split part) against new; checks that both give the same floats.

    python docs/bench/ab_2026_12_05_s16/shares_micro.py
"""

import time

import torch

from responsibility.kernels.shares import shares

torch.manual_seed(0)
T, per, P = 29, 64, 1280
M = T * per
counts = torch.full((T,), per)
row = torch.arange(T).repeat_interleave(counts)
out = torch.randn(M, 10)
inp = torch.relu(torch.randn(M, 128))
inp[:, :20] = 0
grads = (out.unsqueeze(2) * inp.unsqueeze(1)).flatten(1)
G = torch.zeros(T, P).index_add_(0, row, grads)
delta = -0.05 * G


def old(delta, grads, row_of_id, counts, rule):
    weight = grads.abs() if rule == "magnitude" else grads
    denom = torch.zeros_like(delta).index_add_(0, row_of_id, weight)
    scale = delta / denom
    usable = torch.isfinite(scale)
    scale = torch.where(usable, scale, torch.zeros((), dtype=scale.dtype))
    even = torch.where(usable, torch.zeros((), dtype=delta.dtype), delta / counts.to(delta.dtype).unsqueeze(1))
    return scale[row_of_id].mul_(weight).add_(even[row_of_id])


for f in (old, shares, old, shares):
    f(delta, grads, row, counts, "gradient")
    t = time.perf_counter()
    for _ in range(50):
        s = f(delta, grads, row, counts, "gradient")
    print(f.__name__, f"{1e3 * (time.perf_counter() - t) / 50:.2f} ms")
print(
    "same floats:",
    torch.equal(shares(delta, grads, row, counts, "gradient"), old(delta, grads, row, counts, "gradient")),
)
