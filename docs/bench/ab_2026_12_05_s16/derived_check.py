"""Plain SGD: how far is the applied Δw from -lr·G (the update the per-example factors determine), per weight in
units of the weight's float32 spacing, and summed over every weight and step against Σ|Δw|? Paper CNN, 10,000
images, batch 64, 1 epoch, lr 0.05, every parameter.

    python docs/bench/ab_2026_12_05_s16/derived_check.py --data-dir ../shared/data/fashion-mnist
"""

import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead
from torch.utils.data import DataLoader

from responsibility.experiments.classifier import ImageClassifier
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist
from responsibility.experiments.trainers import quiet_trainer

data_dir = "../shared/data/fashion-mnist"
if "--data-dir" in sys.argv:
    data_dir = sys.argv[sys.argv.index("--data-dir") + 1]
images, labels = load_fashion_mnist(data_dir, "train")
data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
stats = {"max_ulps": 0.0, "steps": 0, "steps_within_half_ulp": 0, "abs_dw": 0.0, "abs_err": 0.0}


class Probe(L.Callback):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.snap = [p.detach().clone() for p in pl_module.parameters()]
        self.grads = [p.grad.detach().clone() for p in pl_module.parameters()]
        self.lr = optimizer.param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, *a):
        worst = 0.0
        for p, s, g in zip(pl_module.parameters(), self.snap, self.grads, strict=True):
            dw = p.detach() - s
            derived = -self.lr * g
            spacing = torch.nextafter(p.detach().abs(), torch.tensor(float("inf"))) - p.detach().abs()
            worst = max(worst, float(((dw - derived).abs() / spacing).max()))
            stats["abs_dw"] += float(dw.abs().sum())
            stats["abs_err"] += float((dw - derived).abs().sum())
        stats["max_ulps"] = max(stats["max_ulps"], worst)
        stats["steps"] += 1
        stats["steps_within_half_ulp"] += worst <= 0.5


L.seed_everything(0, verbose=False)
model = ImageClassifier(bench_overhead.MODELS["paper_cnn"][0](), optimizer="sgd", lr=0.05)
quiet_trainer(1, [Probe()]).fit(model, DataLoader(data, batch_size=64, shuffle=True))
print(stats, "sum|err|/sum|dw| =", stats["abs_err"] / stats["abs_dw"])
