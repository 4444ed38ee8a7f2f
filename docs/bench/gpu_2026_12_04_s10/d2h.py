"""D2H of a fold block (10,000 x 1,562 float32, both signs): pageable .cpu() against page-locked copies."""

import statistics
import time

import torch

a = torch.rand(10000, 1562, device="cuda")
b = torch.rand(10000, 1562, device="cuda")
torch.cuda.synchronize()


def pageable():
    return a.cpu().contiguous(), b.cpu().contiguous()


def pinned():
    out = tuple(torch.empty(x.shape, dtype=x.dtype, pin_memory=True).copy_(x, non_blocking=True) for x in (a, b))
    torch.cuda.current_stream().synchronize()
    return out


res = {"pageable": [], "pinned": []}
t = time.perf_counter()
pinned()
first = time.perf_counter() - t
for _r in range(8):
    for name, f in (("pageable", pageable), ("pinned", pinned)):
        t = time.perf_counter()
        f()
        res[name].append(time.perf_counter() - t)
print(
    f"D2H of 2 x 62.5 MB: pinned first call {first * 1e3:.1f} ms; "
    + "; ".join(
        f"{k} median {statistics.median(v) * 1e3:.1f} ms ({min(v) * 1e3:.1f}-{max(v) * 1e3:.1f})"
        for k, v in res.items()
    )
)
