"""Shared test pieces: a tiny model and data, the one Trainer factory, store comparisons, and naive float64
references of the method.

The reference is deliberately independent of the library: it copies every weight at the start of each optimizer
step (weights only change at steps), reads the example ids that the test data carries in the batch, and adds
|Δw| to each example in plain Python loops.
"""

from __future__ import annotations

import atexit
import gzip
import struct
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from responsibility import ResponsibilityCallback, ResponsibilityStore

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SCRIPTS = ROOT / "scripts"
KILL_RESUME_JOB = ROOT / "tests" / "jobs" / "kill_resume_job.py"


class IndexedData(Dataset):
    """(x, y, id) triples: the id lets the reference know the truth independently of the sampler."""

    def __init__(self, n: int = 48, features: int = 8, classes: int = 3, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, features, generator=g)
        self.targets = torch.randint(0, classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.targets[i], torch.tensor(i)


def tensor_data(n: int = 48, features: int = 8, classes: int = 3, seed: int = 0) -> TensorDataset:
    d = IndexedData(n, features, classes, seed)
    return TensorDataset(d.x, d.targets)


class TinyNet(L.LightningModule):
    """Linear-ReLU-Linear classifier; ``optimizer`` in sgd|momentum|adam|adamw; ``freeze`` freezes layer 0."""

    def __init__(
        self,
        features: int = 8,
        hidden: int = 6,
        classes: int = 3,
        optimizer: str = "sgd",
        lr: float = 0.1,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes)
        )
        if freeze:
            self.net[0].requires_grad_(False)
        self.optimizer, self.lr = optimizer, lr

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr)
        if self.optimizer == "momentum":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=1e-3)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr / 10)
        return torch.optim.AdamW(params, lr=self.lr / 10, weight_decay=0.1)


class SgdClassifier(L.LightningModule):
    """Wraps a plain ``net`` as a cross-entropy classifier trained with SGD (lr 0.1)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _Reference(Callback):
    """A reference's float64 R_pos / R_neg per parameter name."""

    pos: dict[str, np.ndarray]
    neg: dict[str, np.ndarray]

    def get(self, name: str, sign: str) -> np.ndarray:
        if sign == "pos":
            return self.pos[name]
        if sign == "neg":
            return self.neg[name]
        return self.pos[name] + self.neg[name]


class NaiveReference(_Reference):
    """R_pos/R_neg in float64, computed the slow obvious way from ids carried by the batch (position 2)."""

    def __init__(self, num_examples: int, granularity: dict[str, str] | None = None, share: str = "full") -> None:
        self.n = num_examples
        self.granularity = granularity or {}
        self.share = share
        self.pos: dict[str, np.ndarray] = {}
        self.neg: dict[str, np.ndarray] = {}
        self.before: dict[str, np.ndarray] | None = None
        self.ids: list[int] = []
        self.last_step = 0

    def on_train_start(self, trainer, pl_module):
        self.last_step = trainer.global_step

    def _weights(self, pl_module):
        return {n: p.detach().double().cpu().numpy().copy() for n, p in pl_module.named_parameters()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before_batch(pl_module, batch[2])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.last_step:
            return
        self.last_step = trainer.global_step
        self.after_step(pl_module)

    # Framework-free: a plain loop calls these around each micro-batch and optimizer step.
    def before_batch(self, model, ids) -> None:
        """Before a (micro-)batch: the weights at the start of the step, and the batch's ids."""
        if self.before is None:
            self.before = self._weights(model)
        self.ids.extend(int(i) for i in ids)

    def after_step(self, model) -> None:
        """After the optimizer step: add the step's |Δw| to each of its examples."""
        after = self._weights(model)
        share = 1.0 if self.share == "full" else 1.0 / len(self.ids)
        for name, w in after.items():
            d = w - self.before[name]
            pos, neg = np.maximum(d, 0), np.maximum(-d, 0)
            if self.granularity.get(name) == "neuron":
                pos = pos.reshape(pos.shape[0], -1).sum(1)
                neg = neg.reshape(neg.shape[0], -1).sum(1)
            if name not in self.pos:
                self.pos[name] = np.zeros((self.n, *pos.shape))
                self.neg[name] = np.zeros((self.n, *neg.shape))
            for m in self.ids:
                self.pos[name][m] += share * pos
                self.neg[name][m] += share * neg
        self.before, self.ids = None, []


def make_trainer(tmp_path, callbacks, **kw) -> L.Trainer:
    """The tests' one Trainer factory: CPU, one device, no logger, checkpoints, progress bars or summaries."""
    opts = dict(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
    )
    opts.update(kw)
    if str(opts.get("strategy", "")).startswith("ddp"):
        callbacks = [*callbacks, DestroyProcessGroupAtExit()]
    return L.Trainer(callbacks=callbacks, **opts)


class DestroyProcessGroupAtExit(Callback):
    """Lightning destroys an NCCL process group at exit but leaves a gloo one to interpreter finalization, where
    torch can abort a worker that has finished ("terminate called without an active exception", SIGABRT; seen once
    in CI; pytorch/pytorch#179291): each worker destroys it while the interpreter is still whole."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if torch.distributed.is_initialized():  # the strategy set the group up before the callbacks' setup
            atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class PerExampleReference(_Reference):
    """Per-example attribution in float64, the slow obvious way.

    At each optimizer step every example's own gradient is recomputed by a separate backward pass of a float64
    copy of ``pl_module.net`` on that example alone (cross-entropy, the loss TinyNet trains with); Δw is split
    by the rule of ``responsibility.per_example`` written out per weight, and added to each example in a loop.
    ``sgd_exact`` skips the rule and adds |-lr · g_j / B| instead: what plain SGD's shares must equal. Parameters
    that ``granularity`` maps to "neuron" get the positive and negative parts of each example's shares summed per
    output unit.
    """

    def __init__(
        self,
        num_examples: int,
        rule: str,
        sgd_exact_lr: float | None = None,
        granularity: dict[str, str] | None = None,
    ) -> None:
        self.n, self.rule, self.sgd_lr = num_examples, rule, sgd_exact_lr
        self.granularity = granularity or {}
        self.pos: dict[str, np.ndarray] = {}
        self.neg: dict[str, np.ndarray] = {}
        self.before: dict[str, np.ndarray] | None = None
        self.batch: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        self.grads: list[dict[str, np.ndarray]] | None = None
        self.last_step = 0

    def on_train_start(self, trainer, pl_module):
        self.last_step = trainer.global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.before is None:
            self.before = {n: p.detach().double().cpu().numpy().copy() for n, p in pl_module.named_parameters()}
        self.batch.extend((x, y, int(i)) for x, y, i in zip(batch[0], batch[1], batch[2], strict=True))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.grads is not None:
            return
        import copy

        net = copy.deepcopy(pl_module.net).double()
        names = [f"net.{n}" for n, _ in net.named_parameters()]
        self.grads = []
        for x, y, _ in self.batch:
            loss = torch.nn.functional.cross_entropy(net(x[None].double()), y[None])
            g = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
            self.grads.append(
                {
                    n: (np.zeros(p.shape) if gi is None else gi.cpu().numpy())
                    for n, p, gi in zip(names, net.parameters(), g, strict=True)
                }
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.last_step:
            return
        self.last_step = trainer.global_step
        ids = [i for _, _, i in self.batch]
        for name, p in pl_module.named_parameters():
            d = p.detach().double().cpu().numpy() - self.before[name]
            g = np.stack([gr[name] for gr in self.grads])
            if self.sgd_lr is not None:
                share = -self.sgd_lr * g / len(ids)
            else:
                w = np.abs(g) if self.rule == "magnitude" else g
                denom = w.sum(0)
                safe = denom != 0
                scale = np.where(safe, d / np.where(safe, denom, 1), 0.0)
                share = scale * w + np.where(safe, 0.0, d / len(ids))
            pos, neg = np.maximum(share, 0), np.maximum(-share, 0)
            if self.granularity.get(name) == "neuron":
                pos = pos.reshape(len(ids), d.shape[0], -1).sum(2)
                neg = neg.reshape(len(ids), d.shape[0], -1).sum(2)
            if name not in self.pos:
                self.pos[name] = np.zeros((self.n, *pos.shape[1:]))
                self.neg[name] = np.zeros((self.n, *neg.shape[1:]))
            for j, m in enumerate(ids):
                self.pos[name][m] += pos[j]
                self.neg[name][m] += neg[j]
        self.before, self.batch, self.grads = None, [], None


class EpochSeededSampler(Sampler[int]):
    """Shuffles by (seed, epoch), so a resumed run sees the same order as an uninterrupted one."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def loader_48() -> DataLoader:
    return DataLoader(IndexedData(48), batch_size=5, sampler=EpochSeededSampler(48))


def all_arrays(path) -> dict[str, np.ndarray]:
    """Every committed array of a store, by meaning (journal rows, R, top-k), for bit-for-bit comparison."""
    s = ResponsibilityStore.open(path)
    rows, ids, steps = s.journal_rows(0, s.steps)
    out = {"ids": ids, "steps": steps, "rows": rows}
    for name in s.parameters:
        for sign in ("pos", "neg"):
            out[f"R/{sign}/{name}"] = s.read(name, sign)
        ids, vals = s.most_responsible(name, k=3)
        out[f"top/{name}"] = np.stack([ids.astype(np.float64), vals.astype(np.float64)])
    return out


def naive_r(store: ResponsibilityStore, name: str, sign: str) -> np.ndarray:
    """R of one parameter of a uniformly recorded store, ``(N, columns)`` in float64, by plain loops over its
    journal: every example of a step gets the step's row (Δw split by sign, or the journaled unit sums)."""
    kinds = store.param_rows(name)
    pos = kinds["delta"].clip(min=0) if "delta" in kinds else kinds["pos"]
    neg = -kinds["delta"].clip(max=0) if "delta" in kinds else kinds["neg"]
    part = {"pos": pos, "neg": neg, "abs": pos.astype(np.float64) + neg}[sign]
    ids, counts = store.membership()
    r = np.zeros((store.num_examples, part.shape[1]))
    for step, members in enumerate(np.split(ids, np.cumsum(counts)[:-1])):
        for m in members:
            r[m] += part[step]
    return r


def assert_same_store(a, b):
    A, B = all_arrays(a), all_arrays(b)
    assert A.keys() == B.keys()
    for key in A:
        np.testing.assert_array_equal(A[key], B[key], err_msg=key)


def fit_resumable(tmp_path, store, epochs, ckpt_path=None, every_n_train_steps=None, **cb_kw) -> L.Trainer:
    """Fit TinyNet on 48 examples with epoch-seeded shuffling and checkpoints under ``tmp_path/ckpt``."""
    cb = ResponsibilityCallback(store, **cb_kw)
    ckpt = ModelCheckpoint(
        dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=every_n_train_steps, save_top_k=-1
    )
    torch.manual_seed(0)
    t = make_trainer(tmp_path, [cb, ckpt], max_epochs=epochs, enable_checkpointing=True)
    t.fit(TinyNet(), loader_48(), ckpt_path=ckpt_path)
    return t


# ------------------------------------------------------------------- IDX files (Fashion-MNIST's format)
def write_idx_u8(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write an unsigned-byte IDX file by hand: magic 0x00 0x00 0x08 ndim, big-endian uint32 dims, data."""
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def write_fake_fashion(directory: Path, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    """The four Fashion-MNIST IDX files (gzipped) with random images and labels 0..9 cycling; returns the arrays."""
    rng = np.random.default_rng(123)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx_u8(directory / f"{prefix}-images-idx3-ubyte.gz", images, compress=True)
        write_idx_u8(directory / f"{prefix}-labels-idx1-ubyte.gz", labels, compress=True)
        arrays[prefix] = (images, labels)
    return arrays
