"""Is there a spare core while training runs? Extra torch work per optimizer step (W: W_REPS rounds, default 2, of a
product the size of fc1's per-unit shares product and an elementwise pass with a maximum), done three ways: not at
all ("base"), inline on the training thread with torch's team ("inline"), or on a worker thread with one torch
thread, overlapping the next step and waited for one step later ("worker"). Alternating within each repeat; paper
CNN, 10,000 Fashion-MNIST images, batch 64, 1 epoch, SGD.

    python second_thread_slack.py REPEATS [W_REPS]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import bench_overhead as bo  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402

from responsibility.experiments.datasets import build_dataset, load_fashion_mnist  # noqa: E402

A, S = torch.randn(64, 5408), torch.randn(128, 5408)  # fc1's inputs and (units, inputs) ratios
W_REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 2


def work() -> None:
    for _ in range(W_REPS):
        torch.mm(A, S.T)
        torch.div(S, 1.0001).amax()


def one_thread() -> None:
    default = torch.get_num_threads()
    torch.set_num_threads(1)
    restore = threading.Thread(target=torch.set_num_threads, args=(default,))
    restore.start()
    restore.join()


class Inline(L.Callback):
    def on_train_batch_end(self, *args: object) -> None:
        work()


class Worker(L.Callback):
    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(1, initializer=one_thread)
        self.future: Future | None = None

    def on_train_batch_end(self, *args: object) -> None:
        if self.future is not None:
            self.future.result()
        self.future = self.executor.submit(work)

    def on_train_end(self, *args: object) -> None:
        if self.future is not None:
            self.future.result()
        self.executor.shutdown()


def main() -> None:
    repeats = int(sys.argv[1])
    start = time.perf_counter()
    for _ in range(20):
        work()
    print(f"W inline, alone: {(time.perf_counter() - start) / 20 * 1e3:.2f} ms", flush=True)
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, bo.FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    walls: dict[str, list[float]] = {"base": [], "inline": [], "worker": []}
    for r in range(repeats):
        order = ["base", "inline", "worker"] if r % 2 == 0 else ["base", "worker", "inline"]
        for name in order:
            callback = {"base": None, "inline": Inline(), "worker": Worker()}[name]
            walls[name].append(bo.fit_once(data, net, args, 1, callback, r)[0])
        print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in walls.items()), flush=True)
    base = statistics.median(walls["base"])
    for name, values in walls.items():
        extra = [(w - b) * 1e3 for w, b in zip(values, walls["base"], strict=True)]
        print(
            f"{name}: median {statistics.median(values):.2f} s, over the same repeat's base: median "
            f"{statistics.median(extra):+.0f} ms {[round(x) for x in extra]} (base median {base:.2f} s)"
        )


if __name__ == "__main__":
    main()
