"""The running sums of the callback defaults' epoch (paper CNN, 10,000 images, one 157-step journal row) added one
step at a time (a 1-step block each, as a per-step add on the training thread would) against as one block (the
writer's way): wall time, and whether the two sums are bit-identical. Torch threads from the first argument.

    python sums_per_step.py THREADS
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import bench_overhead as bo  # noqa: E402
import torch  # noqa: E402
from responsibility.callbacks import ResponsibilityCallback  # noqa: E402

from responsibility import ResponsibilityStore  # noqa: E402
from responsibility.experiments.datasets import build_dataset, load_fashion_mnist  # noqa: E402
from responsibility.store._running import RunningSums  # noqa: E402


def main() -> None:
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, bo.FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    tmp = tempfile.mkdtemp()
    try:
        cb = ResponsibilityCallback(f"{tmp}/rec.zarr", granularity={"*": "neuron", "net.fc2": "weight"}, fold="never")
        bo.fit_once(data, bo.MODELS["paper_cnn"][0], args, 1, cb, 0)
        store = ResponsibilityStore.open(f"{tmp}/rec.zarr")
        rows, ids, steps = store.journal_rows(0, store.steps)
        examples = store._journal.examples(0, store.steps)
        threads = int(sys.argv[1])
        torch.set_num_threads(threads)

        def fresh(name: str) -> RunningSums:
            return RunningSums(ResponsibilityStore.create(f"{tmp}/{name}.zarr", store.spec, layout=store.layout)._state)

        for rep in range(3):
            whole = fresh(f"whole{rep}")
            start = time.perf_counter()
            whole.add(0, rows, ids, 0, steps, examples)
            one_block = time.perf_counter() - start
            stepwise = fresh(f"stepwise{rep}")
            start, lo = time.perf_counter(), 0
            for j, end in enumerate(steps[:, 0]):
                hi = int(end)
                stepwise.add(j, rows[j : j + 1], ids[lo:hi], lo, steps[j : j + 1], examples[lo:hi])
                lo = hi
            per_step = time.perf_counter() - start
            same = all(torch.equal(whole.sums[k][s], stepwise.sums[k][s]) for k in whole.sums for s in (0, 1))
            print(
                f"threads {threads}: one block {one_block * 1e3:.1f} ms; per step {per_step * 1e3:.1f} ms "
                f"({per_step / len(steps) * 1e3:.3f} ms a step); bit-identical: {same}"
            )
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
