"""Time of writing one epoch's journal (ResNet-18 neurons + classifier weights: 79 steps x 33,930 columns) into a
fresh store, by journal column-chunk width; alternating widths, median of the repeats."""

import shutil
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "scripts")
import bench_overhead as bo  # noqa: E402

from responsibility.recording.session import RecordingSession  # noqa: E402
from responsibility.store import ResponsibilityStore  # noqa: E402


class W(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = bo.MODELS["resnet18"][0]()


kw = bo.MODELS["resnet18"][1]["b_neurons_plus_last_layer"]
root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/jw"
widths = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "13273,8192,4096,2048").split(",")]
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
shutil.rmtree(root, ignore_errors=True)
s = RecordingSession(f"{root}/spec.zarr", fold="never", **kw)
s.track(W())
s.start(num_examples=10000, examples_per_step=128, steps_per_epoch=79)
s.open()
spec, layout = s.store.spec, s.store.layout
rng = np.random.default_rng(0)
n = 79
rows = (rng.standard_normal((n, spec.journal_width)) * 1e-3).astype(np.float32)
rows[rng.random(rows.shape) < 0.3] = 0
ids = rng.permutation(10000)[: n * 128].astype(np.int64)
steps = np.zeros((n, 4), np.int64)
steps[:, 0] = np.arange(1, n + 1) * 128
times = {w: [] for w in widths}
for _ in range(reps):
    for w in widths:
        import dataclasses

        path = f"{root}/w{w}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        store = ResponsibilityStore.create(path, spec, layout=dataclasses.replace(layout, journal_chunk_cols=w))
        t = time.perf_counter()
        store.write_journal(0, rows, ids, 0, steps)
        store.commit(n, n * 128)
        times[w].append(time.perf_counter() - t)
for w in widths:
    t = sorted(times[w])
    print(f"cols {w:6d}: median {1e3 * t[len(t) // 2]:.1f} ms  min {1e3 * t[0]:.1f} ms  max {1e3 * t[-1]:.1f} ms")
