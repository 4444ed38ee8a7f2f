"""Per-example weight gradients of the paper CNN's conv (8 x 1 x 3 x 3, 28 x 28 inputs, batch 64) three ways:
the recorder's strided patches and one batched product, a grouped convolution, and F.unfold; isolated, and the
largest difference from the recorder's.

    python docs/bench/ab_2026_12_05_s16/conv_micro.py
"""

import time

import torch
import torch.nn.functional as F
from torch import nn

from responsibility.recording.per_example import _conv2d_weight_grads

torch.manual_seed(0)
conv = nn.Conv2d(1, 8, 3)
x, d = torch.randn(64, 1, 28, 28), torch.randn(64, 8, 26, 26)


def grouped(x, d):
    b, c, h, w = x.shape
    o = d.shape[1]
    kernels = d.unsqueeze(1).expand(b, c, o, *d.shape[2:]).reshape(b * c * o, 1, *d.shape[2:])
    out = F.conv2d(x.reshape(1, b * c, h, w), kernels, groups=b * c)
    return out.view(b, c, o, *out.shape[2:]).transpose(1, 2)


def unfolded(x, d):
    return torch.bmm(d.flatten(2), F.unfold(x, 3).transpose(1, 2))


ref = _conv2d_weight_grads(conv, x, d)
for name, f in [
    ("strided patches, batched product (the recorder's)", lambda: _conv2d_weight_grads(conv, x, d)),
    ("grouped convolution", lambda: grouped(x, d)),
    ("F.unfold, batched product", lambda: unfolded(x, d)),
]:
    f()
    t = time.perf_counter()
    for _ in range(300):
        got = f()
    diff = float((got.reshape(ref.shape) - ref).abs().max())
    print(f"{name:50s} {1e3 * (time.perf_counter() - t) / 300:.3f} ms  (max diff {diff:.1e})")
