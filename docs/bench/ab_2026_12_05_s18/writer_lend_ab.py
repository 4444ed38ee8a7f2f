"""The journal writer's torch threads, three ways, alternating within each repeat, each fit over the repeat's own
baseline, callback defaults (fit-end fold from the running sums):

- "team": the writer thread keeps torch's default team (the initializer replaced by a no-op; before 58be7f2);
- "one": one torch thread on the writer always (the library since 58be7f2);
- "lend": one thread beside training, the usual count while the recorder waits for the writer (``Recorder._wait``):
  switched on the writer thread before it adds a block to the running sums (tried here, not kept).

Prints the fit ratios and the wall time of ``Recorder.close``: the fit's end waiting for the epoch's journal write
(submitted at epoch end) and its running sums.

    python writer_lend_ab.py REPEATS EPOCHS [EPOCHS ...]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import bench_overhead as bo  # noqa: E402
import torch  # noqa: E402
from responsibility.callbacks import ResponsibilityCallback  # noqa: E402

from responsibility.experiments.datasets import build_dataset, load_fashion_mnist  # noqa: E402
from responsibility.recording import recorder  # noqa: E402
from responsibility.store import RunningSums  # noqa: E402

LIBRARY_INIT, WAIT, CLOSE, ADD = (
    recorder._torch_on_this_thread_only,
    recorder.Recorder._wait,
    recorder.Recorder.close,
    RunningSums.add,
)
DEFAULT = torch.get_num_threads()
WAITING = threading.Event()
MODE = {"lend": False}
CLOSED: list[float] = []


def set_here(n: int) -> None:
    """This thread's torch threads to n, the process default kept at DEFAULT (as the library's initializer does)."""
    torch.set_num_threads(n)
    if n != DEFAULT:
        restore = threading.Thread(target=torch.set_num_threads, args=(DEFAULT,))
        restore.start()
        restore.join()


def waiting_wait(self: recorder.Recorder) -> None:
    WAITING.set()
    try:
        WAIT(self)
    finally:
        WAITING.clear()


def lending_add(self: RunningSums, *args: object, **kwargs: object) -> None:
    want = DEFAULT if MODE["lend"] and WAITING.is_set() else 1
    on_writer = threading.current_thread().name.startswith("responsibility-writer")
    if on_writer and torch.get_num_threads() != want:
        set_here(want)
    ADD(self, *args, **kwargs)
    if on_writer and torch.get_num_threads() != 1:
        set_here(1)


def timed_close(self: recorder.Recorder) -> None:
    start = time.perf_counter()
    try:
        CLOSE(self)
    finally:
        CLOSED.append(time.perf_counter() - start)


def main() -> None:
    recorder.Recorder.close = timed_close  # type: ignore[method-assign]
    recorder.Recorder._wait = waiting_wait  # type: ignore[method-assign]
    RunningSums.add = lending_add  # type: ignore[method-assign]
    repeats, epochs_list = int(sys.argv[1]), [int(e) for e in sys.argv[2:]]
    args = argparse.Namespace(optimizer="sgd", accelerator="cpu", precision="32-true", batch_size=64)
    images, labels = load_fashion_mnist(None, "train")
    data = build_dataset(images, labels, bo.FASHION_MNIST_CLASSES, num_samples=10_000, seed=0)
    net = bo.MODELS["paper_cnn"][0]
    work = Path("outputs/bench/writer_lend")
    work.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[int, str], list[tuple[float, float]]] = {}
    bo.fit_once(data, net, args, 1, None, 0)  # warm-up
    names = ["team", "one", "lend"]
    for r in range(repeats):
        for epochs in epochs_list:
            base, _ = bo.fit_once(data, net, args, epochs, None, r)
            line = [f"x{epochs}: baseline {base:.2f} s"]
            for name in names[r % 3 :] + names[: r % 3]:  # each variant first in turn
                recorder._torch_on_this_thread_only = (lambda: None) if name == "team" else LIBRARY_INIT
                MODE["lend"] = name == "lend"
                path = work / "ab.zarr"
                shutil.rmtree(path, ignore_errors=True)
                CLOSED.clear()
                cb = ResponsibilityCallback(path, granularity={"*": "neuron", "net.fc2": "weight"})
                wall, _ = bo.fit_once(data, net, args, epochs, cb, r)
                results.setdefault((epochs, name), []).append((wall / base, sum(CLOSED)))
                line.append(f"{name} {wall / base:.2f}x, close {1e3 * sum(CLOSED):.0f} ms")
            print(f"repeat {r}: " + ", ".join(line), flush=True)
    for epochs in epochs_list:
        for name in names:
            rows = results[(epochs, name)]
            print(
                f"x{epochs} {name}: fit median {statistics.median(x[0] for x in rows):.2f}x "
                f"{[round(x[0], 2) for x in rows]}, close median {1e3 * statistics.median(x[1] for x in rows):.0f} ms "
                f"{[round(1e3 * x[1]) for x in rows]}"
            )


if __name__ == "__main__":
    main()
