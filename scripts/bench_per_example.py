"""Cost of per-example attribution at neuron granularity, against uniform attribution and no recording, in one run.

Paper CNN on Fashion-MNIST (4,000 training images by default), batch 64, CPU. Runs alternate (baseline, then each
setting) so drifts in machine speed hit all settings alike; each ratio is (fit time with the callback) / (fit time
of the baseline of the same repeat), and the median over repeats is reported. Training only (``fold="never"``);
the fold of each setting's store is timed once after the runs.

Settings (granularity, attribution): neurons everywhere plus fc2 at weight granularity ("b", the experiments'
setting) and neurons everywhere ("n"), each uniform and per-example (``auto``: the per-unit shares are formed in
the step); and the library's defaults (weight granularity, ``auto``).

    flock /work/bench.lock python scripts/bench_per_example.py --repeats 3 --out docs/bench/per_example.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from responsibility import ResponsibilityCallback, ResponsibilityStore
from responsibility.experiments.classifier import ImageClassifier
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist
from responsibility.experiments.models import PaperCNN
from responsibility.experiments.trainers import quiet_trainer

B_GRANULARITY = {"*": "neuron", "net.fc2": "weight"}
SETTINGS: dict[str, dict[str, Any]] = {
    "b_uniform": dict(granularity=B_GRANULARITY, attribution="uniform"),
    "b_per_example": dict(granularity=B_GRANULARITY, attribution="auto"),
    "n_uniform": dict(granularity="neuron", attribution="uniform"),
    "n_per_example": dict(granularity="neuron", attribution="auto"),
    "defaults": dict(),
}


def fit_once(data: Any, args: argparse.Namespace, callback: ResponsibilityCallback | None, seed: int) -> float:
    L.seed_everything(seed, verbose=False)
    model = ImageClassifier(PaperCNN(), optimizer=args.optimizer, lr=0.05 if args.optimizer == "sgd" else 1e-3)
    trainer = quiet_trainer(1, [callback] if callback else [])
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the defaults' fallback warning, once per run
        trainer.fit(model, loader)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory (default: search)")
    parser.add_argument("--out", default=None, help="write results as JSON here")
    args = parser.parse_args(argv)

    images, labels = load_fashion_mnist(args.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=args.samples, seed=0)
    workdir = Path(tempfile.mkdtemp(prefix="bench_per_example_"))
    times: dict[str, list[float]] = {"baseline": [], **{k: [] for k in SETTINGS}}
    fit_once(data, args, None, 0)  # warm-up: imports, allocator, thread pools
    try:
        for r in range(args.repeats):
            times["baseline"].append(fit_once(data, args, None, r))
            for name, kw in SETTINGS.items():
                path = workdir / f"{name}.zarr"
                shutil.rmtree(path, ignore_errors=True)
                times[name].append(fit_once(data, args, ResponsibilityCallback(path, fold="never", **kw), r))
            print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
        results: dict[str, Any] = {
            "samples": args.samples,
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "torch_threads": torch.get_num_threads(),
            "baseline_seconds": times["baseline"],
            "settings": {},
        }
        for name in SETTINGS:
            store = ResponsibilityStore.open(workdir / f"{name}.zarr", mode="r+")
            ratios = [t / b for t, b in zip(times[name], times["baseline"], strict=True)]
            ids_per_step = int(store.membership()[1].mean())
            report = store.fold()
            results["settings"][name] = {
                **{k: str(v) for k, v in SETTINGS[name].items()},
                "seconds": times[name],
                "ratio_median": statistics.median(ratios),
                "ratios": ratios,
                "per_example_parameters": [p.name for p in store.spec.params if p.example_form is not None],
                "journal_bytes_per_step": 4 * (store.spec.journal_width + store.spec.example_width * ids_per_step),
                "fold_seconds": report.seconds,
                "fold_ratio_to_baseline_epoch": report.seconds / statistics.median(times["baseline"]),
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
