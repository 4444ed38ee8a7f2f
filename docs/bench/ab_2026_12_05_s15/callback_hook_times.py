"""Wall ms per ResponsibilityCallback hook, summed over a fit (ms/calls), for the callback defaults (paper CNN,
10,000 Fashion-MNIST images, 1 epoch), each fit after its own baseline fit.

    python docs/bench/ab_2026_12_05_s15/callback_hook_times.py --data-dir ../shared/data/fashion-mnist --fits 3
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from responsibility.callbacks import ResponsibilityCallback

from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import bench_overhead  # noqa: E402

spent: dict[str, float] = collections.defaultdict(float)
calls: collections.Counter[str] = collections.Counter()
HOOKS = ("on_", "setup", "teardown", "state_dict", "load_state_dict")


def timed(name: str, inner: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - t
            calls[name] += 1

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--fits", type=int, default=3)
    a = ap.parse_args()
    for name in dir(ResponsibilityCallback):
        inner = getattr(ResponsibilityCallback, name)
        if name.startswith(HOOKS) and callable(inner) and inner is not getattr(Callback, name, None):
            setattr(ResponsibilityCallback, name, timed(name, inner))
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(a.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bench_overhead.MODELS["paper_cnn"][0]
    bench_overhead.fit_once(data, net, args, 1, None, 0)  # warm-up
    store = Path(tempfile.mkdtemp()) / "hooks.zarr"
    for r in range(a.fits):
        shutil.rmtree(store, ignore_errors=True)
        spent.clear()
        calls.clear()
        base, _ = bench_overhead.fit_once(data, net, args, 1, None, r)
        cb = ResponsibilityCallback(str(store), granularity={"*": "neuron", "net.fc2": "weight"})
        wall, _ = bench_overhead.fit_once(data, net, args, 1, cb, r)
        hooks = sorted(spent.items(), key=lambda kv: -kv[1])
        print(
            f"baseline {base:.2f} s, fit {wall:.2f} s, hooks {sum(spent.values()):.2f} s: "
            + "; ".join(f"{k} {1e3 * v:.0f}/{calls[k]}" for k, v in hooks),
            flush=True,
        )
    shutil.rmtree(store.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
