"""Wall time of each callback hook (and of recorder and session pieces) in ResNet-18 fits; CPU or GPU.

    python hooktime.py gpu 10000 [--sync]     # from the repository root (it imports scripts/bench_overhead.py)

Without ``--sync`` a hook's time on a GPU is the host's time in it (kernels are queued, not waited for).
"""

import argparse
import collections
import functools
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "scripts")
import bench_overhead as bo  # noqa: E402
from responsibility.callbacks import ResponsibilityCallback  # noqa: E402

import responsibility  # noqa: E402
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset  # noqa: E402
from responsibility.recording import recorder as rec_mod  # noqa: E402
from responsibility.recording.session import RecordingSession  # noqa: E402

ACC = sys.argv[1] if len(sys.argv) > 1 else "gpu"
SAMPLES = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
SYNC = "--sync" in sys.argv
HOOKS = ["on_train_batch_start", "on_before_optimizer_step", "on_train_batch_end", "on_train_epoch_end"]
HOOKS += ["on_train_end", "on_train_start", "setup", "teardown"]
FITS = 3
seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
each: collections.defaultdict[str, list[float]] = collections.defaultdict(list)
calls: collections.Counter[str] = collections.Counter()


def timed(owner: type, name: str, label: str) -> None:
    inner = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args, **kwargs):
        if SYNC:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = inner(*args, **kwargs)
        if SYNC:
            torch.cuda.synchronize()
        seconds[label] += time.perf_counter() - start
        each[label].append(time.perf_counter() - start)
        calls[label] += 1
        return result

    setattr(owner, name, wrapper)


def main() -> None:
    print("code:", responsibility.__file__)
    args = argparse.Namespace(optimizer="sgd", accelerator=ACC, precision="bf16-mixed", batch_size=128)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (SAMPLES, 28, 28), dtype=np.uint8)
    data = build_dataset(images, rng.integers(0, 10, SAMPLES), FASHION_MNIST_CLASSES, num_samples=SAMPLES, seed=0)
    net, settings = bo.MODELS["resnet18"]
    kw = settings["b_neurons_plus_last_layer"]
    for hook in HOOKS:
        timed(ResponsibilityCallback, hook, "cb." + hook)
    for name in ["snapshot", "record_step", "flush", "close", "_submit", "__init__", "_wait", "_write"]:
        timed(rec_mod.Recorder, name, "rec." + name)
    for name in ["open", "finish", "start"]:
        timed(RecordingSession, name, "session." + name)
    work = Path("/tmp/hookw")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()

    def callback(i: int) -> ResponsibilityCallback:
        return ResponsibilityCallback(work / f"s{i}.zarr", fold="never", **kw)

    bo.fit_once(data, net, args, 1, callback(0), 0)  # warm-up
    seconds.clear()
    calls.clear()
    each.clear()
    for i in range(FITS):
        base = bo.fit_once(data, net, args, 1, None, 0)[0]
        with_cb = bo.fit_once(data, net, args, 1, callback(i + 1), 0)[0]
        print(f"baseline {base:.3f} with {with_cb:.3f} ratio {with_cb / base:.3f}")
    for label in sorted(seconds, key=seconds.__getitem__, reverse=True):
        per_fit, n, per_call = seconds[label] / FITS, calls[label] // FITS, seconds[label] / max(calls[label], 1)
        steady = sorted(each[label][3:]) or [0.0]
        print(
            f"{label:32s} {per_fit:.4f} s per fit  {n} calls  {1e3 * per_call:.3f} ms/call"
            f"  median after 3: {1e3 * steady[len(steady) // 2]:.3f} ms"
        )


if __name__ == "__main__":
    main()
