"""Query speed on the paper CNN: ``attribute`` inputs/s (the dense scores of the default method), ``explain``
queries/s batched and p50/p90 per single input, for the default (contribution) and the paper's rule.

The paper CNN (conv 8@3x3 -> fc1 128 -> fc2 10, inside ``responsibility.experiments.classifier.ImageClassifier``) is
trained for one epoch on 10,000 Fashion-MNIST images with the ResponsibilityCallback tracking every layer, then folded.

fc1 is recorded at **neuron** granularity (one R column per hidden unit), every other parameter per weight.
fc1 per weight would be 692,224 weights x 10,000 examples x 2 signs x 4 bytes = 55 GB of folded R, so its
top-k index could not be built; per neuron it is 10 MB, and fc1 still takes part (a unit's column). All layers
are queried (``layers=None``). The default method reads each layer's R once into memory (the warm-up) and scores
every training example for every input; the paper's rule (``method="most_activated"``) compares raw activations
across layers and serves ``k=10`` from the top-k index (depth 10).

    python scripts/bench_query.py --out docs/bench/query.json
    python scripts/bench_query.py --samples 2000 --queries 200      # quick run

The store is kept under ``outputs/`` (not /tmp) and reused by later runs with the same ``--samples``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from responsibility.callbacks import ResponsibilityCallback
from torch.utils.data import DataLoader

from responsibility import ResponsibilityStore
from responsibility.experiments.classifier import ImageClassifier
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist
from responsibility.experiments.models import PaperCNN
from responsibility.experiments.trainers import quiet_trainer
from responsibility.query import Explainer, ExplainOptions

GRANULARITY = {"*": "weight", "net.fc1.weight": "neuron"}


def train(samples: int, store_path: Path, seed: int) -> tuple[ImageClassifier, float]:
    """Train (or reload) the model and store; returns the model and the training seconds (0 if reused)."""
    ckpt = store_path.with_suffix(".ckpt")
    L.seed_everything(seed, verbose=False)
    model = ImageClassifier(PaperCNN(), optimizer="sgd", lr=0.05)
    if ckpt.exists() and ResponsibilityStore.exists(store_path):
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
        return model, 0.0
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=samples, seed=seed)
    cb = ResponsibilityCallback(store_path, granularity=GRANULARITY, fold="always", topk=10, overwrite=True)
    trainer = quiet_trainer(1, [cb])
    start = time.perf_counter()
    trainer.fit(model, DataLoader(data, batch_size=64, shuffle=True))
    seconds = time.perf_counter() - start
    torch.save(model.state_dict(), ckpt)
    return model, seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10000, help="training images (default 10000)")
    parser.add_argument("--queries", type=int, default=1000, help="test images to explain (default 1000)")
    parser.add_argument("--batch-size", type=int, default=256, help="inputs per forward pass when batched")
    parser.add_argument("-k", type=int, default=10, help="examples per query (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed attribute() calls, averaged (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    threads = max(1, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    store_path = Path("outputs") / "bench_query" / f"paper_cnn_{args.samples}.zarr"
    store_path.parent.mkdir(parents=True, exist_ok=True)
    model, train_s = train(args.samples, store_path, args.seed)
    model.eval()
    store = ResponsibilityStore.open(store_path)
    test_images, _ = load_fashion_mnist(None, "test")
    x = torch.from_numpy(test_images[: args.queries].astype(np.float32) / 255.0).unsqueeze(1)

    explainer = Explainer(model, store)
    paper = ExplainOptions(method="most_activated", sign="abs", k=args.k)
    default = ExplainOptions(k=args.k)
    explainer.attribute(x[:2])  # warm-up: reads R of every layer into memory once
    explainer.explain(x[:2], paper)  # and |W| and the top-k index
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        dense = explainer.attribute(x, batch_size=args.batch_size)
        runs.append(time.perf_counter() - t0)
    attribute_s = statistics.mean(runs)
    batched: dict[str, float] = {}
    lists: dict[str, int] = {}
    single: dict[str, list[float]] = {"default": [], "paper": []}
    for name, opts in (("default", default), ("paper", paper)):
        t0 = time.perf_counter()
        ex = explainer.explain(x, opts, batch_size=args.batch_size)
        batched[name] = time.perf_counter() - t0
        lists[name] = len({tuple(row) for row in ex.example_ids.tolist()})
        # One input is too little work to split over threads: intra-op parallelism only adds synchronisation.
        torch.set_num_threads(1)
        for i in range(len(x)):
            t0 = time.perf_counter()
            explainer.explain(x[i : i + 1], opts)
            single[name].append(time.perf_counter() - t0)
        torch.set_num_threads(threads)

    result: dict[str, Any] = {
        "samples": args.samples,
        "queries": len(x),
        "k": args.k,
        "granularity": GRANULARITY,
        "train_seconds": round(train_s, 1),
        "attribute_inputs_per_s": round(len(x) / attribute_s, 1),
        "attribute_runs_s": [round(r, 3) for r in runs],
        "attribute_matrix": list(dense.shape),
        "batch_size": args.batch_size,
        "torch_threads": {"single": 1, "batched": threads},
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}",
    }
    for name in ("default", "paper"):
        ms = sorted(1e3 * s for s in single[name])
        result[f"{name}_explain_queries_per_s"] = round(len(x) / batched[name], 1)
        result[f"{name}_single_p50_ms"] = round(statistics.median(ms), 3)
        result[f"{name}_single_p90_ms"] = round(ms[int(0.9 * (len(ms) - 1))], 3)
        result[f"{name}_distinct_top{args.k}_lists"] = lists[name]
    print(f"{'metric':<34} {'value':>12}")
    for key, value in result.items():
        if isinstance(value, (int, float)):
            print(f"{key:<34} {value:>12}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
