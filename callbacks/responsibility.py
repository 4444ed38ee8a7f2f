"""ResponsibilityCallback: record per-weight responsibility of every training example during ``Trainer.fit``.

A thin adapter over :class:`responsibility.recording.recorder.Recorder`:

- ``setup``: validate the strategy and the layer selection; arrange to learn example ids from the train sampler.
- ``on_train_start``: open or create the store (rank 0), resuming where the loaded checkpoint left off.
- ``on_train_batch_start``: collect the batch's example ids (all micro-batches of an accumulated step).
- ``on_before_optimizer_step``: snapshot the weights the optimizer is about to change (once per step).
- ``on_train_batch_end``: when ``global_step`` advanced, journal Δw with the step's ids (Lightning has no hook
  after ``optimizer.step()``; its own ``WeightAveraging`` uses the same pattern).
- epoch end, checkpoint (``state_dict``) and fit end: flush; at fit end fold R when it fits the size budget.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from responsibility.choices import (
    Attribution,
    BatchShare,
    Codec,
    FoldMode,
    OnError,
    RDtype,
    ShareRuleSetting,
    check_choice,
)
from responsibility.errors import (
    ExampleIdError,
    LayerSelectionError,
    ParameterChangedError,
    ResponsibilityError,
    StoreExistsError,
    StoreWriteError,
    UnsupportedStrategyError,
)
from responsibility.recording.ids import (
    IdsKey,
    SamplerIdTracker,
    as_ids,
    batch_length,
    check_ids,
    dataset_labels,
    ids_from_batch,
)
from responsibility.recording.per_example import ExampleGradients, default_rule, example_form
from responsibility.recording.recorder import Recorder
from responsibility.recording.selection import select_parameters, validate_granularity
from responsibility.store import ResponsibilityStore
from responsibility.store.layout import Layout
from responsibility.store.location import check_location
from responsibility.store.spec import ParamSpec, RecordingSpec

log = logging.getLogger(__name__)


class ResponsibilityCallback(Callback):
    """Record the responsibility arrays of Khadivpour & Guzdial for the tracked weights of a model.

    Args:
        store: directory of the Zarr v3 store (or an fsspec URL such as ``s3://bucket/run.zarr``).
        layers: module or parameter names to track, glob patterns allowed; ``None`` = all trainable parameters.
        granularity: ``"weight"`` (one R value per weight), ``"neuron"`` (per output unit, summing the unit's
            incoming |Δw|), or a mapping from patterns to either; later entries override earlier ones.
        batch_share: ``"full"`` gives every example of a step the whole |Δw| (the paper); ``"mean"`` divides
            it by the number of examples in the step. Uniform attribution only.
        attribution: ``"uniform"`` (the paper: every example of a step gets the step's Δw) or ``"per_example"``
            (Δw is split among the step's examples by their own gradients; nn.Linear and nn.Conv2d parameters at
            weight granularity, single process; see :mod:`responsibility.per_example`).
        share_rule: per-example split: ``"gradient"`` (exact for plain SGD), ``"magnitude"`` (for momentum, Adam,
            weight decay) or ``"auto"``: gradient when every optimizer of tracked weights is plain SGD.
        ids_key: read example ids from the batch (a key or position, or a callable ``batch -> ids``) instead of
            learning them from the DataLoader's sampler; needed for iterable datasets.
        num_examples: size of the id space; defaults to ``len(train_dataset)``.
        labels: per-example labels to store; defaults to the dataset's ``targets``/``labels`` if present.
        topk: depth of the per-weight top-k index built by a fold.
        fold: ``"auto"`` folds at fit end when R (both signs) fits ``fold_budget_mb``; ``"always"``/``"never"``.
        fold_budget_mb: size limit for the automatic fold, and the memory budget of folding (GPU memory when
            training on CUDA: the fold then runs on the GPU).
        journal_buffer_mb: memory for the two in-flight journal buffers; sets the steps per journal chunk.
        codec: ``"lz4"`` (default), ``"zstd"`` or ``"none"``: lossless compression of all arrays.
        r_dtype: ``"float32"`` (default) or ``"float16"``: opt-in lossy storage of the folded R (relative error
            at most 2^-11; the journal, running sums and the top-k index stay exact).
        overwrite: replace an existing store when a fresh (non-resumed) run starts.
        on_error: what a storage failure (full disk, read-only location, lost connection) does: ``"raise"``
            stops training with :class:`StoreWriteError`; ``"warn"`` warns and lets training go on without
            recording. Either way the store keeps its last commit. Bad settings or ids always raise.
        storage_options: fsspec options for URL stores.
    """

    def __init__(
        self,
        store: str | Path,
        *,
        layers: str | Sequence[str] | None = None,
        granularity: str | Mapping[str, str] = "weight",
        batch_share: BatchShare = "full",
        attribution: Attribution = "uniform",
        share_rule: ShareRuleSetting = "auto",
        ids_key: IdsKey | None = None,
        num_examples: int | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        topk: int = 10,
        fold: FoldMode = "auto",
        fold_budget_mb: float = 2048,
        journal_buffer_mb: float = 256,
        codec: Codec = "lz4",
        r_dtype: RDtype = "float32",
        overwrite: bool = False,
        on_error: OnError = "raise",
        storage_options: dict[str, Any] | None = None,
        background_writer: bool = True,
    ) -> None:
        check_choice("batch_share", batch_share, BatchShare)
        check_choice("attribution", attribution, Attribution)
        check_choice("share_rule", share_rule, ShareRuleSetting)
        if attribution == "per_example" and batch_share != "full":
            raise ValueError("batch_share applies to uniform attribution; per-example shares already sum to Δw")
        check_choice("fold", fold, FoldMode)
        check_choice("on_error", on_error, OnError)
        if num_examples is not None and int(num_examples) <= 0:
            raise ValueError(f"num_examples must be positive, got {num_examples}")
        if fold_budget_mb <= 0 or journal_buffer_mb <= 0:
            raise ValueError("fold_budget_mb and journal_buffer_mb must be positive")
        if isinstance(granularity, Mapping):
            granularity = dict(granularity)  # Hydra passes DictConfig
        validate_granularity(granularity)
        Layout(topk=topk, codec=codec, r_dtype=r_dtype)  # validates these now rather than at train start
        self.store_path = check_location(store)
        self.layers = (
            [str(x) for x in layers] if isinstance(layers, Sequence) and not isinstance(layers, str) else layers
        )
        self.granularity = granularity
        self.batch_share = batch_share
        self.attribution = attribution
        self.share_rule = share_rule
        self.ids_key = ids_key
        self.num_examples = None if num_examples is None else int(num_examples)
        self.labels = None if labels is None else np.asarray(labels)
        self.topk = int(topk)
        self.fold = fold
        self.fold_budget = int(fold_budget_mb * 2**20)
        self.journal_buffer = int(journal_buffer_mb * 2**20)
        self.codec = codec
        self.r_dtype = r_dtype
        self.overwrite = overwrite
        self.on_error = on_error
        self.storage_options = storage_options
        self.background_writer = background_writer
        # Run state; no threads, locks or open stores before fit, so the callback pickles for ddp_spawn.
        self._steps = 0
        self._num_ids = 0
        self._stopped_at: int | None = None  # steps the store kept when a storage failure stopped recording
        self._loaded: dict[str, Any] | None = None
        self._reset_run_state()

    def _reset_run_state(self) -> None:
        self._tracked: list[tuple[ParamSpec, torch.nn.Parameter]] = []
        self._owners: list[tuple[str, torch.nn.Module, str, torch.nn.Parameter]] = []
        self._tracker: SamplerIdTracker | None = None
        self._examples: ExampleGradients | None = None
        self._examples_per_step = 1
        self._recorder: Recorder | None = None
        self._store: ResponsibilityStore | None = None
        self._pending_ids: list[np.ndarray] = []
        self._last_global_step = 0
        self._checked_first_batch = False
        self._restore_strategy: Callable[[], None] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(store=self.store_path)

    @property
    def store(self) -> ResponsibilityStore:
        """The store written by the last fit (opened read-only when not training)."""
        if self._store is not None:
            return self._store
        return ResponsibilityStore.open(self.store_path, storage_options=self.storage_options)

    # ------------------------------------------------------------------ setup
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        _check_strategy(trainer)
        self._tracked = select_parameters(pl_module.named_parameters(), self.layers, self.granularity)
        # Where each tracked tensor lives, to notice cheaply at every step if user code swapped it out.
        self._owners = [
            (spec.name, pl_module.get_submodule(spec.name.rpartition(".")[0]), spec.name.rpartition(".")[2], param)
            for spec, param in self._tracked
        ]
        if self.attribution == "per_example":
            self._setup_per_example(trainer)
        if self.ids_key is None:
            self._tracker = SamplerIdTracker()
            self._restore_strategy = _track_train_dataloaders(trainer, self._tracker)

    def _setup_per_example(self, trainer: pl.Trainer) -> None:
        if trainer.world_size > 1:
            raise UnsupportedStrategyError(
                "attribution='per_example' records in a single process for now; with several ranks use "
                "attribution='uniform'"
            )
        coarse = [spec.name for spec, _ in self._tracked if spec.granularity != "weight"]
        if coarse:
            raise LayerSelectionError(
                f"attribution='per_example' records weight granularity only; {coarse} are set to 'neuron'"
            )
        specs = [
            dataclasses.replace(spec, example_form=example_form(module, leaf, spec.name))
            for (spec, _), (_, module, leaf, _) in zip(self._tracked, self._owners, strict=True)
        ]
        self._tracked = [(spec, param) for spec, (_, param) in zip(specs, self._tracked, strict=True)]
        self._examples = ExampleGradients(
            [(spec, module, leaf) for spec, (_, module, leaf, _) in zip(specs, self._owners, strict=True)]
        )
        self._examples.attach()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        num_examples, labels = self._dataset_facts(trainer)
        loader = trainer.train_dataloader
        batch = getattr(loader, "batch_size", None) or 1
        self._examples_per_step = int(batch) * trainer.accumulate_grad_batches
        rule = self.share_rule
        if rule == "auto":  # only per-example stores use a rule; uniform ones keep the spec's default
            per_example = self.attribution == "per_example"
            rule = default_rule(trainer.optimizers, [p for _, p in self._tracked]) if per_example else "gradient"
        spec = RecordingSpec(tuple(s for s, _ in self._tracked), num_examples, self.batch_share, self.attribution, rule)
        resume = self._loaded["steps"] if self._loaded is not None else (self._steps or None)
        if self._loaded is not None and self._loaded.get("stopped_at") is not None:
            self._stopped_at = self._loaded["stopped_at"]
        error: str | None = None
        if trainer.is_global_zero and self._stopped_at is not None:
            warnings.warn(
                f"responsibility: recording into {self.store_path} stopped at step {self._stopped_at} after a "
                "storage failure; this run does not record",
                RuntimeWarning,
                stacklevel=2,
            )
        elif trainer.is_global_zero:
            try:
                with self._storage_guard():
                    self._store = self._open_store(spec, labels, resume)
                    self._recorder = Recorder(self._store, self._tracked, background=self.background_writer)
            except Exception as exc:  # re-raised on every rank below so DDP peers do not hang
                error = f"{type(exc).__name__}: {exc}"
                if trainer.world_size == 1:
                    raise
        error = trainer.strategy.broadcast(error, src=0)
        if error is not None:
            raise RuntimeError(f"responsibility store setup failed on rank 0: {error}")
        self._steps = resume or 0
        self._num_ids = self._loaded["ids"] if self._loaded is not None else self._num_ids
        self._loaded = None
        self._last_global_step = trainer.global_step
        self._pending_ids = []

    def _dataset_facts(self, trainer: pl.Trainer) -> tuple[int, np.ndarray | None]:
        loader = trainer.train_dataloader
        dataset = loader.dataset if isinstance(loader, DataLoader) else None
        if self.ids_key is None:
            if not isinstance(loader, DataLoader) or self._tracker is None or self._tracker.loader is not loader:
                raise ExampleIdError(
                    "cannot learn example ids from the sampler: the training data is not a single map-style "
                    f"torch DataLoader (got {type(loader).__name__}). Pass ids_key=... (a batch key, position "
                    "or callable) and num_examples=..."
                )
        num_examples = self.num_examples
        if num_examples is None:
            try:
                num_examples = len(dataset) if dataset is not None else None
            except TypeError:
                num_examples = None
            if num_examples is None:
                raise ExampleIdError("the training dataset has no length: pass num_examples=... to the callback")
        labels = self.labels
        if labels is not None and labels.shape != (num_examples,):
            raise ValueError(f"labels has shape {labels.shape}, expected ({num_examples},)")
        if labels is None and dataset is not None:
            labels = dataset_labels(dataset, num_examples)
        return num_examples, labels

    def _open_store(self, spec: RecordingSpec, labels: np.ndarray | None, resume: int | None) -> ResponsibilityStore:
        path, opts = self.store_path, self.storage_options
        if ResponsibilityStore.exists(path, storage_options=opts):
            fresh_overwrite = resume is None and self.overwrite
            if not fresh_overwrite:
                store = ResponsibilityStore.open(path, mode="r+", storage_options=opts)
                store.check_compatible(spec, labels)
                if resume is not None:
                    store.rollback(resume)
                    rank_zero_info(f"responsibility: resuming store {path} at step {resume}")
                    return store
                if store.steps > 0:
                    raise StoreExistsError(
                        f"store {path} already holds {store.steps} recorded steps. Resume training from its "
                        "checkpoint (trainer.fit(ckpt_path=...)), use a new store path, or overwrite=True."
                    )
                # An empty store (perhaps half made by a killed run) holds nothing: make it afresh below.
        elif resume:
            raise FileNotFoundError(f"the checkpoint was recorded into {path}, which no longer exists")
        layout = self._layout(spec)
        info = {"layers": self.layers, "granularity": self.granularity, "created_by": type(self).__name__}
        return ResponsibilityStore.create(
            path, spec, layout=layout, labels=labels, info=info, overwrite=True, storage_options=opts
        )

    def _layout(self, spec: RecordingSpec) -> Layout:
        # A step's buffer holds its journal row and, per example, the per-example values.
        row_bytes = 4 * (spec.journal_width + spec.example_width * self._examples_per_step)
        chunk_steps = int(max(1, min(256, self.journal_buffer // (2 * row_bytes))))
        # ~4 MiB journal chunks: big enough to write at disk speed, small enough to read one weight's column.
        cols = int(max(1024, (4 << 20) // (4 * chunk_steps)))
        return Layout(
            chunk_steps=chunk_steps, journal_chunk_cols=cols, codec=self.codec, topk=self.topk, r_dtype=self.r_dtype
        )

    # ------------------------------------------------------------------ per batch
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # setup() made a tracker exactly when ids come from the sampler rather than the batch.
        ids = ids_from_batch(batch, self.ids_key) if self._tracker is None else as_ids(self._tracker.next_ids())
        if not self._checked_first_batch:
            n = batch_length(batch) if self.ids_key is None else None
            if n is not None and n != len(ids):
                raise ExampleIdError(
                    f"the sampler yielded {len(ids)} indices for a batch of {n} examples: the DataLoader's "
                    "sampler does not describe its batches (custom collate?). Pass ids_key=..."
                )
            self._checked_first_batch = True
        check_ids(ids, self._num_examples())
        self._pending_ids.append(ids)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._recorder is not None:
            self._recorder.snapshot(p for group in optimizer.param_groups for p in group["params"])

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._last_global_step:
            return  # accumulating gradients: the step that covers this micro-batch comes later
        self._last_global_step = trainer.global_step
        ids = np.concatenate(self._pending_ids) if self._pending_ids else np.zeros(0, np.int64)
        self._pending_ids = []
        examples = self._examples.take() if self._examples is not None else None
        if trainer.world_size > 1:
            ids = _gather_ids(trainer, ids)
        if self._stopped_at is not None:
            return
        for name, module, leaf, param in self._owners:
            if module._parameters.get(leaf) is not param:
                raise ParameterChangedError(
                    f"tracked parameter {name!r} was replaced by another tensor during training; R would silently "
                    "stop following it. Replace parameters before fit, or not at all."
                )
        if self._recorder is not None:
            with self._storage_guard():
                self._recorder.record_step(
                    ids, global_step=trainer.global_step, epoch=trainer.current_epoch, examples=examples
                )
        self._steps += 1
        self._num_ids += len(ids)

    def _num_examples(self) -> int:
        if self._store is not None:
            return self._store.num_examples
        n = self.num_examples or (self._tracker.num_examples if self._tracker else None)
        return n if n is not None else np.iinfo(np.int64).max

    # ------------------------------------------------------------------ flushing, folding, resume
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush()

    def _flush(self) -> None:
        if self._recorder is not None:
            with self._storage_guard():
                self._recorder.flush()

    @contextmanager
    def _storage_guard(self) -> Iterator[None]:
        """Apply ``on_error`` to storage failures; every other error (bad settings, ids, mismatch) propagates."""
        try:
            yield
        except StoreWriteError as exc:
            self._storage_failed(exc, exc.__cause__)
        except ResponsibilityError:
            raise
        except OSError as exc:
            self._storage_failed(StoreWriteError(f"cannot write the store {self.store_path}: {exc!r}"), exc)

    def _storage_failed(self, failure: StoreWriteError, cause: BaseException | None) -> None:
        if self.on_error == "raise":
            raise failure from cause
        committed = self._store.steps if self._store is not None else 0
        warnings.warn(
            f"responsibility: {failure}. Training goes on WITHOUT recording; the store keeps its first {committed} "
            "steps, later ones are not recorded.",
            RuntimeWarning,
            stacklevel=4,
        )
        self._stopped_at = committed
        if self._recorder is not None:
            self._recorder.abort()
            self._recorder = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        store = self._store
        if self._recorder is None or store is None:
            return
        with self._storage_guard():
            self._recorder.close()
        if self._recorder is None:  # stopped by a storage failure
            return
        self._recorder = None
        r_bytes = 8 * store.num_examples * sum(p.units for p in store.spec.params)
        if self.fold == "always" or (self.fold == "auto" and r_bytes <= self.fold_budget):
            with self._storage_guard():  # the journal is complete either way; a failed fold can be redone
                # On a GPU run the fold's scatter-adds run on the training device too.
                device = pl_module.device if pl_module.device.type == "cuda" else "cpu"
                report = store.fold(budget_bytes=self.fold_budget, device=device)
            if self._stopped_at is not None:
                return
            rank_zero_info(
                f"responsibility: folded {report.steps} steps into R ({report.cells:.3g} cells, "
                f"{report.seconds:.2f} s) at {store.path}"
            )
        elif self.fold == "auto":
            rank_zero_info(
                f"responsibility: R would take {r_bytes / 2**30:.1f} GiB (> fold budget); journal kept at "
                f"{store.path}. Fold later with `responsibility fold {store.path}`; queries read the journal."
            )

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close_quietly()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._close_quietly()
        if self._restore_strategy is not None:
            self._restore_strategy()
        if self._examples is not None:
            self._examples.detach()
        store_steps, ids = self._steps, self._num_ids
        self._reset_run_state()
        self._steps, self._num_ids = store_steps, ids

    def _close_quietly(self) -> None:
        if self._recorder is None:
            return
        recorder, self._recorder = self._recorder, None
        try:
            recorder.close()
        except Exception as exc:  # the original error matters more; say what was not saved
            log.error("responsibility: could not flush the journal after an error: %s", exc)

    def state_dict(self) -> dict[str, Any]:
        # A checkpoint must never point past what the store holds: flush before the checkpoint is written.
        self._flush()
        return {
            "steps": int(self._steps),
            "ids": int(self._num_ids),
            "store": self.store_path,
            "stopped_at": None if self._stopped_at is None else int(self._stopped_at),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "steps" in state_dict:
            self._loaded = {
                "steps": int(state_dict["steps"]),
                "ids": int(state_dict["ids"]),
                "stopped_at": state_dict.get("stopped_at"),
            }


def _check_strategy(trainer: pl.Trainer) -> None:
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    if isinstance(trainer.strategy, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy)):
        raise UnsupportedStrategyError(
            f"ResponsibilityCallback does not support {type(trainer.strategy).__name__}: it shards parameters, "
            "so no rank sees whole weights. Use a single device or DDP."
        )


def _track_train_dataloaders(trainer: pl.Trainer, tracker: SamplerIdTracker) -> Callable[[], None]:
    """Attach ``tracker`` to every train DataLoader as the Trainer prepares it; returns an undo function.

    Lightning starts iterating the train loader (workers prefetch indices) before any callback hook that sees
    it, so the sampler must be wrapped while the loader is processed: ``Strategy.process_dataloader`` is the
    hook Lightning gives strategies for exactly that, after its own sampler replacement.
    """
    strategy = trainer.strategy
    had_own = "process_dataloader" in vars(strategy)
    original = strategy.process_dataloader

    def process_dataloader(dataloader: object) -> object:
        dataloader = original(dataloader)
        if trainer.training:
            tracker.attach(dataloader)
        return dataloader

    strategy.process_dataloader = process_dataloader  # type: ignore[method-assign]

    def restore() -> None:
        if had_own:
            strategy.process_dataloader = original  # type: ignore[method-assign]
        else:
            del strategy.process_dataloader

    return restore


def _gather_ids(trainer: pl.Trainer, ids: np.ndarray) -> np.ndarray:
    """All ranks' ids of this step, rank by rank (a DistributedSampler's global batch)."""
    strategy = trainer.strategy
    device = strategy.root_device
    counts = strategy.all_gather(torch.tensor([len(ids)], device=device)).reshape(-1)
    width = int(counts.max())
    padded = torch.full((width,), -1, dtype=torch.int64, device=device)
    padded[: len(ids)] = torch.from_numpy(ids).to(device)
    gathered = strategy.all_gather(padded).reshape(-1).cpu().numpy()
    return gathered[gathered >= 0]
