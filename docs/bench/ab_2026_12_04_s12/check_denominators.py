"""Record one epoch of the callback defaults twice, with the per-unit shares' denominator taken from autograd (the
library's path) and with it forced off (formed from the captured rows, as before 092f283); compare R bit for bit.

    python docs/bench/ab_2026_12_04_s12/check_denominators.py --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import lightning as L
import numpy as np
from responsibility.callbacks import ResponsibilityCallback
from torch.utils.data import DataLoader

import responsibility.recording.attribution as attribution
from responsibility import ResponsibilityStore
from responsibility.experiments.classifier import ImageClassifier
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist
from responsibility.experiments.models import PaperCNN
from responsibility.experiments.trainers import quiet_trainer
from responsibility.recording.unit_shares import unit_shares


def record(path: Path, data, use_autograd: bool, calls: list[bool]) -> ResponsibilityStore:
    def counted(*args, **kwargs):
        given = len(args) > 6 and args[6] is not None
        calls.append(given)
        return unit_shares(*(args if use_autograd else args[:6]), **kwargs)

    attribution.unit_shares = counted
    shutil.rmtree(path, ignore_errors=True)
    L.seed_everything(0, verbose=False)
    model = ImageClassifier(PaperCNN(), optimizer="sgd", lr=0.05)
    cb = ResponsibilityCallback(path, granularity={"*": "neuron", "net.fc2": "weight"}, fold="never")
    quiet_trainer(1, [cb]).fit(model, DataLoader(data, batch_size=64, shuffle=True))
    return ResponsibilityStore.open(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--samples", type=int, default=2560)
    args = parser.parse_args()
    images, labels = load_fashion_mnist(args.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=args.samples, seed=0)
    work = Path(tempfile.mkdtemp(prefix="denominators_"))
    calls: list[bool] = []
    new = record(work / "autograd.zarr", data, True, calls)
    print(f"unit_shares calls given autograd's sum: {sum(calls)} of {len(calls)}")
    old = record(work / "rows.zarr", data, False, [])
    for name in new.parameters:
        for sign in ("pos", "neg"):
            a, b = new.read(name, sign), old.read(name, sign)
            print(f"{name} {sign}: bit-identical {np.array_equal(a, b)}, max |difference| {np.abs(a - b).max():.3g}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
