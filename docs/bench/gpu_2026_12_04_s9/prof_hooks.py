"""cProfile of one ResNet-18 fit with the callback (after a warm-up fit): where the hooks' host time goes."""

import cProfile
import io
import pstats
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, "scripts")
import argparse

import bench_overhead as bo  # noqa: E402
from responsibility.callbacks import ResponsibilityCallback  # noqa: E402

from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset  # noqa: E402

args = argparse.Namespace(optimizer="sgd", accelerator="gpu", precision="bf16-mixed", batch_size=128)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8)
data = build_dataset(images, rng.integers(0, 10, 10000), FASHION_MNIST_CLASSES, num_samples=10000, seed=0)
net, settings = bo.MODELS["resnet18"]
kw = settings["b_neurons_plus_last_layer"]
work = Path("/tmp/profw")
shutil.rmtree(work, ignore_errors=True)
work.mkdir()
bo.fit_once(data, net, args, 1, ResponsibilityCallback(work / "w.zarr", fold="never", **kw), 0)
pr = cProfile.Profile()
orig = {}
for hook in ("on_before_optimizer_step", "on_train_batch_end", "on_train_end", "on_train_epoch_end"):
    f = getattr(ResponsibilityCallback, hook)

    def wrapper(*a, _f=f, **k):
        pr.enable()
        try:
            return _f(*a, **k)
        finally:
            pr.disable()

    setattr(ResponsibilityCallback, hook, wrapper)
bo.fit_once(data, net, args, 1, ResponsibilityCallback(work / "p.zarr", fold="never", **kw), 0)
for key in ("tottime", "cumulative"):
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats(key).print_stats(28)
    print(s.getvalue())
