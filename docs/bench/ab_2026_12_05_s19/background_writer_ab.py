"""The journal written by the background writer thread (``background_writer=True``, the default) against on the
training thread (``False``), alternating within each repeat, each fit over the repeat's own baseline.

    python background_writer_ab.py REPEATS EPOCHS [EPOCHS ...]

Callback defaults' setting (neurons everywhere, fc2 per weight, R summed while recording and folded at fit end);
paper CNN, 10,000 Fashion-MNIST images, batch 64, SGD. A journal chunk row holds one epoch's 157 steps, so a fit
writes once per epoch.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import bench_overhead as bo  # noqa: E402
from responsibility.callbacks import ResponsibilityCallback  # noqa: E402

from responsibility.experiments.datasets import build_dataset, load_fashion_mnist  # noqa: E402


def main() -> None:
    repeats = int(sys.argv[1])
    epochs_list = [int(e) for e in sys.argv[2:]]
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, bo.FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    work = Path("outputs/bench/background_writer")
    work.mkdir(parents=True, exist_ok=True)
    ratios: dict[tuple[int, bool], list[float]] = {}
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    for r in range(repeats):
        for epochs in epochs_list:
            base, _ = bo.fit_once(data, net, args, epochs, None, r)
            line = [f"{epochs} epoch(s): baseline {base:.2f} s"]
            for background in (True, False) if r % 2 == 0 else (False, True):
                path = work / "ab.zarr"
                shutil.rmtree(path, ignore_errors=True)
                cb = ResponsibilityCallback(
                    path, granularity={"*": "neuron", "net.fc2": "weight"}, background_writer=background
                )
                wall, _ = bo.fit_once(data, net, args, epochs, cb, r)
                ratios.setdefault((epochs, background), []).append(wall / base)
                line.append(f"{'background' if background else 'inline'} {wall / base:.2f}x")
            print(f"repeat {r}: " + ", ".join(line), flush=True)
    for epochs in epochs_list:
        bg, inline = ratios[(epochs, True)], ratios[(epochs, False)]
        wins = sum(b < a for a, b in zip(bg, inline, strict=True))
        print(
            f"{epochs} epoch(s): background median {statistics.median(bg):.2f}x {[round(x, 2) for x in bg]}; inline "
            f"median {statistics.median(inline):.2f}x {[round(x, 2) for x in inline]}; inline faster in {wins} of "
            f"{len(bg)}"
        )


if __name__ == "__main__":
    main()
