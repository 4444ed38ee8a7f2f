"""What the callback's default does at fit end (fold R there) against leaving R lazy: what a user waits for.

Paper CNN, Fashion-MNIST (10,000 training images by default), batch 64, SGD lr 0.05, the setting of the overhead
benchmark's ``b_defaults`` (neurons everywhere, fc2 per weight, every other option at its default). For each
``--epochs``: one fit with ``fold="auto"`` (the default: R summed while recording and folded at fit end; the fold's
seconds come from the callback's ``fold_report``, fit times from bench_overhead.py) and one with ``fold="never"``
(the same seed, so the same journal, left unfolded: every query forms the R it needs from the journal). Then the
same queries on both stores, alternately: ``most_responsible`` over fc2's weights and over fc1's units, ``explain``
for 3 test inputs (the default method reads R of every layer), and ``attribute`` for ``--queries`` test inputs.
Each query opens the store afresh, as a new process (the CLI, the explorer) would.

    flock /work/bench.lock python scripts/bench_fit_end.py --epochs 1 3 10 --out docs/bench/fit_end.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from responsibility import ResponsibilityCallback, ResponsibilityStore, attribute, explain
from responsibility.experiments.classifier import ImageClassifier
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist
from responsibility.experiments.models import PaperCNN
from responsibility.experiments.trainers import quiet_trainer

GRANULARITY = {"*": "neuron", "net.fc2": "weight"}


def fit(data, epochs: int, path: Path, fold: str) -> tuple[ImageClassifier, ResponsibilityCallback]:
    L.seed_everything(0, verbose=False)
    model = ImageClassifier(PaperCNN(), optimizer="sgd", lr=0.05)
    cb = ResponsibilityCallback(path, granularity=GRANULARITY, fold=fold)
    quiet_trainer(epochs, [cb]).fit(model, DataLoader(data, batch_size=64, shuffle=True))
    return model.eval(), cb


def queries(model: ImageClassifier, x: torch.Tensor) -> dict[str, Callable[[ResponsibilityStore], object]]:
    return {
        "most_responsible fc2 weights": lambda s: s.most_responsible("net.fc2.weight", k=10),
        "most_responsible fc1 units": lambda s: s.most_responsible("net.fc1.weight", k=10),
        "explain 3 inputs": lambda s: explain(model, s, x[:3], k=10),
        f"attribute {len(x)} inputs": lambda s: attribute(model, s, x),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=1000, help="test inputs for attribute (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each query per store (default 3)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory (default: search)")
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # Lightning's notes about the tiny data loader

    images, labels = load_fashion_mnist(args.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=args.samples, seed=0)
    test_images, test_labels = load_fashion_mnist(args.data_dir, "test")
    test = build_dataset(test_images, test_labels, FASHION_MNIST_CLASSES, num_samples=args.queries, seed=1)
    x = torch.stack([test[i][0] for i in range(len(test))])

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for epochs in args.epochs:
            folded, lazy = Path(tmp) / f"folded{epochs}.zarr", Path(tmp) / f"lazy{epochs}.zarr"
            model, cb = fit(data, epochs, folded, "auto")
            fit(data, epochs, lazy, "never")
            if cb.fold_report is None:
                raise SystemExit("the default did not fold at fit end: R exceeded fold_budget_mb")
            row = {
                "epochs": epochs,
                "fit_end_fold_seconds": cb.fold_report.seconds,
                "r_bytes": cb.fold_report.r_bytes,
                "queries": {},
            }
            print(
                f"epochs {epochs}: fit-end fold {cb.fold_report.seconds:.2f} s ({cb.fold_report.r_bytes / 1e6:.0f} MB "
                "of R); then each query, on the folded store and on the lazy one:"
            )
            for name, query in queries(model, x).items():
                times: dict[str, list[float]] = {"folded": [], "lazy": []}
                for rep in range(args.repeats):
                    order = [("folded", folded), ("lazy", lazy)]
                    for kind, path in order if rep % 2 == 0 else order[::-1]:
                        start = time.perf_counter()
                        query(ResponsibilityStore.open(path))
                        times[kind].append(time.perf_counter() - start)
                medians = {kind: statistics.median(t) for kind, t in times.items()}
                row["queries"][name] = {"folded": times["folded"], "lazy": times["lazy"]}
                print(f"  {name:32s} folded {medians['folded']:.2f} s, lazy {medians['lazy']:.2f} s")
            results.append(row)
            shutil.rmtree(folded)
            shutil.rmtree(lazy)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "samples": args.samples,
            "queries": args.queries,
            "repeats": args.repeats,
            "host": platform.node(),
            "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
