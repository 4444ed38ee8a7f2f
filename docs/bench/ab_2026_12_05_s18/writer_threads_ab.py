"""The journal writer's torch work on its own thread only (the recorder's executor initializer
``_torch_on_this_thread_only``) against torch's default team on that thread (the initializer replaced by a no-op),
alternating within each repeat, each fit over the repeat's own baseline.

    python writer_threads_ab.py REPEATS SETTING:EPOCHS [SETTING:EPOCHS ...]

SETTING: ``defaults`` (neurons everywhere, fc2 per weight, every other option at the callback's default, so R is
summed while recording and folded at fit end) or ``all_weights_bf16`` (every weight, uniform, bfloat16 journal,
``fold="never"``).
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
from responsibility.recording import recorder  # noqa: E402

SETTINGS: dict[str, dict] = {
    "defaults": dict(granularity={"*": "neuron", "net.fc2": "weight"}),
    "all_weights_bf16": dict(granularity="weight", attribution="uniform", journal_dtype="bfloat16", fold="never"),
}
LIMITED = recorder._torch_on_this_thread_only


def main() -> None:
    repeats = int(sys.argv[1])
    cases = [(name, int(epochs)) for name, epochs in (c.split(":") for c in sys.argv[2:])]
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, bo.FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    work = Path("outputs/bench/writer_threads")
    work.mkdir(parents=True, exist_ok=True)
    ratios: dict[tuple[str, int, str], list[float]] = {}
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    for r in range(repeats):
        for name, epochs in cases:
            base, _ = bo.fit_once(data, net, args, epochs, None, r)
            line = [f"{name} x{epochs}: baseline {base:.2f} s"]
            for variant in ("team", "one thread") if r % 2 == 0 else ("one thread", "team"):
                recorder._torch_on_this_thread_only = LIMITED if variant == "one thread" else (lambda: None)
                path = work / "ab.zarr"
                shutil.rmtree(path, ignore_errors=True)
                wall, _ = bo.fit_once(data, net, args, epochs, ResponsibilityCallback(path, **SETTINGS[name]), r)
                ratios.setdefault((name, epochs, variant), []).append(wall / base)
                line.append(f"{variant} {wall / base:.2f}x")
            print(f"repeat {r}: " + ", ".join(line), flush=True)
    recorder._torch_on_this_thread_only = LIMITED
    for name, epochs in cases:
        team, one = ratios[(name, epochs, "team")], ratios[(name, epochs, "one thread")]
        wins = sum(b < a for a, b in zip(team, one, strict=True))
        print(
            f"{name} x{epochs}: team median {statistics.median(team):.2f}x {[round(x, 2) for x in team]}; "
            f"one thread median {statistics.median(one):.2f}x {[round(x, 2) for x in one]}; "
            f"one thread faster in {wins} of {len(team)}"
        )


if __name__ == "__main__":
    main()
