"""Wall time per callback hook (and recorder pieces) in a ResNet-18 fit; CPU or GPU."""
import sys, argparse, shutil, time, collections, functools
from pathlib import Path
sys.path.insert(0, "scripts")
import numpy as np, torch
import bench_overhead as bo
from responsibility.callbacks import ResponsibilityCallback
from responsibility.recording import recorder as rec_mod
from responsibility.experiments.datasets import FASHION_MNIST_CLASSES, build_dataset

acc = sys.argv[1] if len(sys.argv) > 1 else "gpu"
SYNC = "--sync" in sys.argv
import responsibility; print("code:", responsibility.__file__)
samples = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
args = argparse.Namespace(optimizer="sgd", accelerator=acc, precision="bf16-mixed", batch_size=128)
rng = np.random.default_rng(0)
data = build_dataset(rng.integers(0, 256, (samples, 28, 28), dtype=np.uint8), rng.integers(0, 10, samples),
                     FASHION_MNIST_CLASSES, num_samples=samples, seed=0)
net, settings = bo.MODELS["resnet18"]
kw = settings["b_neurons_plus_last_layer"]
T = collections.defaultdict(float); N = collections.Counter()
def timed(obj, name, label):
    f = getattr(obj, name)
    @functools.wraps(f)
    def w(*a, **k):
        if SYNC: torch.cuda.synchronize()
        t = time.perf_counter(); r = f(*a, **k)
        if SYNC: torch.cuda.synchronize()
        T[label] += time.perf_counter() - t; N[label] += 1; return r
    setattr(obj, name, w)
for h in ["on_train_batch_start", "on_before_optimizer_step", "on_train_batch_end", "on_train_epoch_end", "on_train_end", "on_train_start", "setup", "teardown"]:
    timed(ResponsibilityCallback, h, "cb." + h)
for h in ["snapshot", "record_step", "flush", "close", "_submit", "__init__", "_wait", "_write"]:
    timed(rec_mod.Recorder, h, "rec." + h)
from responsibility.recording.session import RecordingSession
for h in ["open", "finish", "start"]:
    timed(RecordingSession, h, "session." + h)
work = Path("/tmp/hookw"); shutil.rmtree(work, ignore_errors=True); work.mkdir()
cb = lambda i: ResponsibilityCallback(work / f"s{i}.zarr", fold="never", **kw)
bo.fit_once(data, net, args, 1, cb(0), 0)
T.clear(); N.clear()
for i in range(3):
    b = bo.fit_once(data, net, args, 1, None, 0)[0]
    w = bo.fit_once(data, net, args, 1, cb(i + 1), 0)[0]
    print(f"baseline {b:.3f} with {w:.3f} ratio {w/b:.3f}")
for k in sorted(T, key=T.get, reverse=True):
    print(f"{k:32s} {T[k]/3:.4f} s per fit  {N[k]//3} calls  {1e3*T[k]/max(N[k],1):.3f} ms/call")
