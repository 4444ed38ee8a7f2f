"""Wall ms in each of the callback's Lightning hooks (and in the session's store opening inside them), summed over
one fit of the callback defaults' setting, beside a baseline fit of the same repeat. Paper CNN, 10,000
Fashion-MNIST images, batch 64, 1 epoch, SGD; neurons everywhere, fc2 per weight.

    python hooks_cost.py FITS
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import bench_overhead as bo  # noqa: E402
from responsibility.callbacks import ResponsibilityCallback  # noqa: E402

import responsibility.recording.session as ses  # noqa: E402
from responsibility.experiments.datasets import build_dataset, load_fashion_mnist  # noqa: E402

HOOKS = ("setup", "on_train_start", "on_train_batch_start", "on_before_optimizer_step", "on_train_batch_end")
HOOKS += ("on_train_epoch_end", "on_train_end", "teardown")
spent: dict[str, float] = collections.defaultdict(float)


def wrap(owner: object, name: str, label: str) -> None:
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - start

    setattr(owner, name, timed)


def main() -> None:
    for hook in HOOKS:
        if hook in vars(ResponsibilityCallback):
            wrap(ResponsibilityCallback, hook, hook)
    wrap(ses.RecordingSession, "open", "(session.open, in on_before_optimizer_step)")
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, bo.FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    tmp = tempfile.mkdtemp()
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    for i in range(int(sys.argv[1])):
        spent.clear()
        base, _ = bo.fit_once(data, net, args, 1, None, i)
        cb = ResponsibilityCallback(f"{tmp}/{i}.zarr", granularity={"*": "neuron", "net.fc2": "weight"})
        wall, _ = bo.fit_once(data, net, args, 1, cb, i)
        parts = ", ".join(f"{k} {v * 1e3:.0f}" for k, v in spent.items() if v >= 5e-4)
        print(f"baseline {base:.2f} s, with the callback {wall:.2f} s (+{(wall - base) * 1e3:.0f} ms); ms: {parts}")


if __name__ == "__main__":
    main()
