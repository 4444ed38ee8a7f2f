"""How far the weight change plain SGD applies is from ``-lr * grad``, on real paper-CNN steps.

Issue 12 asked whether per-example attribution with plain SGD could stop journalling Δw, since the examples'
gradient factors determine ``-lr * Σ g``. The applied change is ``fl(p - lr * g) - p``: rounded to the weight's
own precision, so it differs from ``-lr * g`` by up to half an ulp of the weight, which is large relative to a
small update. This prints, per parameter, the relative difference between the two over ``--steps`` steps
(Fashion-MNIST, batch 64, float32).

    python scripts/sgd_update_rounding.py --steps 30
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import DataLoader

from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist
from responsibility.experiments.models import PaperCNN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory (default: the usual places)")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    torch.manual_seed(0)
    images, labels = load_fashion_mnist(args.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=args.samples, seed=0)
    net = PaperCNN()
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)
    rel: dict[str, list[np.ndarray]] = {name: [] for name, _ in net.named_parameters()}
    for step, batch in enumerate(DataLoader(data, batch_size=64, shuffle=True)):
        if step == args.steps:
            break
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(batch[0]), batch[1]).backward()
        params = dict(net.named_parameters())
        before = {name: p.detach().double() for name, p in params.items()}
        intended = {name: -args.lr * p.grad.double() for name, p in params.items() if p.grad is not None}
        opt.step()
        for name, want in intended.items():
            moved = want != 0
            applied = params[name].detach().double() - before[name]
            rel[name].append(((applied - want).abs()[moved] / want.abs()[moved]).numpy())
    print(f"{'parameter':<14} relative |applied Δw - (-lr g)| / |lr g| over {args.steps} steps")
    for name, parts in rel.items():
        r = np.concatenate(parts)
        print(f"{name:<14} median {np.median(r):.1e}   99th percentile {np.quantile(r, 0.99):.1e}   max {r.max():.1e}")


if __name__ == "__main__":
    main()
