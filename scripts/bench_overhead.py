"""Training overhead of the ResponsibilityCallback (journal path), and fold throughput, measured in one run.

Paper CNN on Fashion-MNIST (10,000 training images by default), batch 64, plain SGD (``--optimizer adam`` for
Adam), CPU (``--accelerator gpu`` on a CUDA machine). Runs alternate
(baseline, setting a, setting b, ...) so drifts in machine speed hit all settings alike; the reported ratio is the
median over repeats of (fit time with callback) / (fit time of the baseline of the same repeat).

Settings: (a) every weight tracked at weight granularity, uniform attribution (the worst case: ~2.8 MB of Δw per
step; ``_bf16`` with the opt-in bfloat16 journal); (b) neuron granularity everywhere plus weight granularity on the
last layer, attribution left at the callback's default ('auto'); (c) every weight, per-example
attribution (journal: Δw per step plus each example's gradient factors). These time the journal path alone
(``fold="never"``); ``b_defaults`` is (b) with every other callback setting at its default, so its fit time
includes whatever the default does at fit end.

    python scripts/bench_overhead.py --repeats 5 --out docs/bench/overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from responsibility.callbacks import ResponsibilityCallback
from torch.utils.data import DataLoader

from responsibility import ResponsibilityStore
from responsibility.experiments.classifier import ImageClassifier
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset, load_fashion_mnist
from responsibility.experiments.models import MLP, LeNet5, PaperCNN, ResNet18
from responsibility.experiments.trainers import quiet_trainer

# model -> (network factory, recorder settings). Setting a tracks every weight, b neurons plus the last layer.
MODELS = {
    "paper_cnn": (
        lambda: PaperCNN(),
        {
            "a_all_weights": dict(granularity="weight", attribution="uniform"),
            "a_all_weights_bf16": dict(granularity="weight", attribution="uniform", journal_dtype="bfloat16"),
            "b_neurons_plus_last_layer": dict(granularity={"*": "neuron", "net.fc2": "weight"}),
            "b_defaults": dict(granularity={"*": "neuron", "net.fc2": "weight"}, fold=None),
            "c_all_weights_per_example": dict(granularity="weight", attribution="per_example"),
        },
    ),
    "lenet5": (
        lambda: LeNet5(),
        {
            "a_all_weights": dict(granularity="weight", attribution="uniform"),
            "b_neurons_plus_last_layer": dict(granularity={"*": "neuron", "net.fc3": "weight"}),
            "c_all_weights_per_example": dict(granularity="weight", attribution="per_example"),
        },
    ),
    # ~10.5M parameters; per-weight journaling of all of them (42 MB per step) is what setting b avoids.
    "mlp10m": (
        lambda: MLP(784, [2048, 2048, 2048], 10),
        {"b_neurons_plus_last_layer": dict(granularity={"*": "neuron", "net.fc4": "weight"})},
    ),
    # The GPU check's model: neurons everywhere, weights on the classifier (uniform attribution).
    "resnet18": (
        lambda: ResNet18(),
        {"b_neurons_plus_last_layer": dict(granularity={"*": "neuron", "net.fc": "weight"}, attribution="uniform")},
    ),
}


def fit_once(
    data, net, args: argparse.Namespace, epochs: int, callback: ResponsibilityCallback | None, seed: int
) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all threads of this process) of one ``trainer.fit``.

    CPU time is much less disturbed than wall time by other processes on a shared machine; both are reported.
    """
    L.seed_everything(seed, verbose=False)
    lr = 0.05 if args.optimizer == "sgd" else 1e-3
    model = ImageClassifier(net(), optimizer=args.optimizer, lr=lr)
    trainer = quiet_trainer(
        epochs, [callback] if callback else [], accelerator=args.accelerator, precision=args.precision
    )
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    start, cpu = time.perf_counter(), _cpu_seconds()
    trainer.fit(model, loader)
    return time.perf_counter() - start, _cpu_seconds() - cpu


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def disk_write_bandwidth(directory: Path, nbytes: int) -> float:
    """Plain sequential write (+fsync-free, like the store) of nbytes, in bytes/s."""
    block = np.random.default_rng(0).standard_normal(1 << 22, dtype=np.float32).tobytes()
    path = directory / "bandwidth.bin"
    start = time.perf_counter()
    with open(path, "wb") as f:
        written = 0
        while written < nbytes:
            f.write(block)
            written += len(block)
    seconds = time.perf_counter() - start
    path.unlink()
    return written / seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="paper_cnn")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--settings", nargs="*", default=None, help="run only these settings (default: all)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory (default: search)")
    parser.add_argument(
        "--synthetic", action="store_true", help="random 28x28 images instead of Fashion-MNIST (same shapes)"
    )
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed")
    parser.add_argument("--workdir", default=None, help="where stores are written (default: a temp dir)")
    parser.add_argument(
        "--lazy-fold-columns",
        type=int,
        default=8192,
        help="fc1 columns folded from the journal to time the kernel in setting a",
    )
    parser.add_argument("--out", default=None, help="write results as JSON here")
    args = parser.parse_args(argv)

    if args.synthetic:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (args.samples, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, args.samples)
    else:
        images, labels = load_fashion_mnist(args.data_dir, "train")
    data = build_dataset(images, labels, FASHION_MNIST_CLASSES, num_samples=args.samples, seed=0)
    # Stores go under ./outputs by default: /tmp can sit on a much slower filesystem than the work tree.
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_overhead_", dir=Path("outputs").resolve()))
    workdir.mkdir(parents=True, exist_ok=True)

    net, settings = MODELS[args.model]
    if args.settings:
        unknown = set(args.settings) - settings.keys()
        if unknown:
            parser.error(f"unknown settings {sorted(unknown)} for {args.model}; known: {sorted(settings)}")
        settings = {k: v for k, v in settings.items() if k in args.settings}
    times: dict[str, list[float]] = {"baseline": [], **{k: [] for k in settings}}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    fit_once(data, net, args, 1, None, 0)  # warm-up: imports, allocator, thread pools
    for r in range(args.repeats):
        wall, used = fit_once(data, net, args, args.epochs, None, r)
        times["baseline"].append(wall)
        cpu["baseline"].append(used)
        for name, kw in settings.items():
            path = workdir / f"{name}.zarr"
            shutil.rmtree(path, ignore_errors=True)
            # fold="never" times the journal path alone; fold=None keeps the callback's default (fit end included).
            options = {"fold": "never", **kw}
            cb = ResponsibilityCallback(path, **{k: v for k, v in options.items() if v is not None})
            wall, used = fit_once(data, net, args, args.epochs, cb, r)
            times[name].append(wall)
            cpu[name].append(used)
        print(
            f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.2f}s ({cpu[k][-1]:.2f} CPU s)" for k, v in times.items()),
            flush=True,
        )

    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "model": args.model,
        "optimizer": args.optimizer,
        "accelerator": args.accelerator,
        "samples": args.samples,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "baseline_seconds": times["baseline"],
        "baseline_cpu_seconds": cpu["baseline"],
        "settings": {},
    }
    for name in settings:
        ratios = [t / b for t, b in zip(times[name], times["baseline"], strict=True)]
        store = ResponsibilityStore.open(workdir / f"{name}.zarr", mode="r+")
        ids_per_step = int(store.membership()[1].mean())
        value_bytes = 2 if store.layout.journal_dtype == "bfloat16" else 4
        row_bytes = value_bytes * store.spec.journal_width + 4 * store.spec.example_width * ids_per_step
        cpu_ratios = [t / b for t, b in zip(cpu[name], cpu["baseline"], strict=True)]
        entry = {
            "seconds": times[name],
            "ratio_median": statistics.median(ratios),
            "ratios": ratios,
            "cpu_seconds": cpu[name],
            "cpu_ratio_median": statistics.median(cpu_ratios),
            "cpu_ratios": cpu_ratios,
            "steps": store.steps,
            "journal_bytes_per_step": row_bytes,
            "r_cells": store.num_examples * sum(p.units for p in store.spec.params),
            "share_rule": store.spec.share_rule if store.spec.attribution == "per_example" else None,
        }
        journal_bytes = row_bytes * store.steps
        bw = disk_write_bandwidth(workdir, journal_bytes)
        entry["disk_write_bytes_per_s"] = bw
        entry["journal_write_seconds_at_disk_bandwidth"] = journal_bytes / bw
        entry["baseline_median_seconds"] = statistics.median(times["baseline"])
        if name[0] in "ac" and args.model == "paper_cnn":
            cols = np.arange(min(args.lazy_fold_columns, store.param("net.fc1.weight").units))
            start = time.perf_counter()
            store.read("net.fc1.weight", "pos", weights=cols)
            seconds = time.perf_counter() - start
            cells = int(store.membership()[1].sum()) * len(cols)
            entry["lazy_fold_fc1"] = {
                "columns": len(cols),
                "seconds": seconds,
                "cells": cells,
                "cells_per_second": cells / seconds,
            }
            small = [p.name for p in store.spec.params if p.name != "net.fc1.weight"]
            report = store.fold(small)
            entry["fold_other_params"] = {
                "parameters": small,
                "seconds": report.seconds,
                "cells": report.cells,
                "cells_per_second": report.cells_per_second,
            }
        elif entry["r_cells"] * 8 <= 2 << 30:  # fold only what fits 2 GiB of R here
            report = store.fold()
            entry["fold"] = {
                "seconds": report.seconds,
                "cells": report.cells,
                "cells_per_second": report.cells_per_second,
                "r_bytes": report.r_bytes,
                "topk_seconds": report.topk_seconds,
            }
        results["settings"][name] = entry

    print(
        f"\nfit wall time, median of {args.repeats} alternating repeats "
        f"(baseline {results['settings'][next(iter(settings))]['baseline_median_seconds']:.2f} s)"
    )
    print(f"{'setting':<28} {'ratio':>7} {'CPU ratio':>9} {'journal/step':>13} {'disk-bound journal s':>21}")
    for name, e in results["settings"].items():
        print(
            f"{name:<28} {e['ratio_median']:>7.3f} {e['cpu_ratio_median']:>9.3f} "
            f"{e['journal_bytes_per_step'] / 2**20:>10.2f} MiB {e['journal_write_seconds_at_disk_bandwidth']:>21.2f}"
        )
    for name, e in results["settings"].items():
        for key in ("fold", "fold_other_params", "lazy_fold_fc1"):
            if key in e:
                f = e[key]
                print(
                    f"{name:<28} {key:<18} {f['cells']:.3g} cells in {f['seconds']:.2f} s = "
                    f"{f['cells_per_second'] / 1e9:.3f} Gcells/s"
                )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
