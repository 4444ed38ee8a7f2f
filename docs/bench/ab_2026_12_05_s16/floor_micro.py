"""The arithmetic floor of per-example attribution of the paper CNN's fc1 (128 x 5,408) at neuron granularity:
its unit shares take one (batch x inputs) @ (inputs x units) product a step, the size of each of the layer's own
three products in training. Times each, isolated, median of 7 rounds of 200 calls (batch 64).

    python docs/bench/ab_2026_12_05_s16/floor_micro.py
"""

import statistics
import time

import torch

torch.manual_seed(0)
B, UNITS, INPUTS = 64, 128, 5408
x = torch.relu(torch.randn(B, INPUTS))
w = torch.randn(UNITS, INPUTS) * 0.02
delta = torch.randn(B, UNITS) * 1e-3
scale = torch.full((UNITS, INPUTS), -0.05)
cases = {
    "forward x @ W.T": lambda: x @ w.T,
    "backward, weight gradient delta.T @ x": lambda: delta.T @ x,
    "backward, input gradient delta @ W": lambda: delta @ w,
    "unit shares x @ S.T (the recorder's product)": lambda: torch.mm(x, scale.T),
}
times = {k: [] for k in cases}
for _ in range(7):
    for name, f in cases.items():
        f()
        t = time.perf_counter()
        for _ in range(200):
            f()
        times[name].append((time.perf_counter() - t) / 200)
for name, ts in times.items():
    print(f"{name:46s} {1e3 * statistics.median(ts):.3f} ms")
print(f"threads: {torch.get_num_threads()}")
