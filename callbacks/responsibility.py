"""ResponsibilityCallback: record per-weight responsibility of every training example during ``Trainer.fit``.

A thin adapter over :class:`responsibility.recording.session.RecordingSession`, which owns the recording policies
(tracked parameters, opening or creating the store, resume, ``on_error``, the fit-end fold). The callback adds
what only Lightning knows:

- ``setup``: validate the strategy; track the model; arrange to learn example ids from the train sampler.
- ``on_train_start``: the dataset's size and labels; open or create the store on rank 0, resuming where the
  loaded checkpoint left off; an error there is raised on every rank.
- ``on_train_batch_start``: collect the batch's example ids (all micro-batches of an accumulated step).
- ``on_before_optimizer_step``: snapshot the weights the optimizer is about to change (once per step).
- ``on_train_batch_end``: when ``global_step`` advanced, journal Δw with the step's ids, gathered from every rank
  (Lightning has no hook after ``optimizer.step()``; its own ``WeightAveraging`` uses the same pattern).
- epoch end: start writing the epoch's steps; checkpoint (``state_dict``) and fit end: wait until they are
  committed; at fit end fold R when it fits the size budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader
from typing_extensions import override

from responsibility.choices import (
    AttributionSetting,
    BatchShare,
    Codec,
    FoldMode,
    JournalDelta,
    JournalDtype,
    OnError,
    RDtype,
    ShareRuleSetting,
    Sign,
)
from responsibility.errors import ExampleIdError, UnsupportedStrategyError
from responsibility.recording.ids import (
    IdsKey,
    SamplerIdTracker,
    as_ids,
    batch_length,
    check_ids,
    dataset_class_names,
    dataset_labels,
    dataset_length,
    ids_from_batch,
)
from responsibility.recording.session import RecordingSession
from responsibility.store import FoldReport, ResponsibilityStore
from responsibility.store.spec import check_class_names

_SESSION_SETTINGS = frozenset(
    (
        "store_path layers granularity batch_share attribution share_rule topk topk_signs fold fold_budget "
        "journal_buffer codec r_dtype journal_dtype journal_delta overwrite on_error storage_options background_writer"
    ).split()
)


class ResponsibilityCallback(Callback):
    """Record the responsibility arrays of Khadivpour & Guzdial for the tracked weights of a model.

    The recording settings (``store``, ``layers``, ``granularity``, ``batch_share``, ``attribution``,
    ``share_rule``, ``topk``, ``topk_signs``, ``fold``, ``fold_budget_mb``, ``journal_buffer_mb``, ``codec``,
    ``r_dtype``, ``journal_dtype``, ``journal_delta``, ``overwrite``, ``on_error``, ``storage_options``,
    ``background_writer``) are
    those of :class:`~responsibility.recording.session.RecordingSession`, documented there; at fit end the fold runs
    on the training device when that is a GPU. The callback adds:

    Args:
        ids_key: read example ids from the batch (a key or position, or a callable ``batch -> ids``) instead of
            learning them from the DataLoader's sampler; needed for iterable datasets.
        num_examples: size of the id space; defaults to ``len(train_dataset)``.
        labels: per-example labels to store; defaults to the dataset's ``targets``/``labels`` if present.
        class_names: the name of every class (label ``c`` is ``class_names[c]``), shown by the CLI, reports and
            the explorer; defaults to the dataset's ``class_names`` or ``classes`` (torchvision's) when they are
            strings that cover the labels.

    Attributes:
        fold_report: what the last fit's fit-end fold did (:class:`~responsibility.store.FoldReport`: its seconds,
            cells and bytes of R written), or None when that fit folded nothing.
    """

    def __init__(
        self,
        store: str | Path,
        *,
        layers: str | Sequence[str] | None = None,
        granularity: str | Mapping[str, str] = "weight",
        batch_share: BatchShare = "full",
        attribution: AttributionSetting = "auto",
        share_rule: ShareRuleSetting = "auto",
        ids_key: IdsKey | None = None,
        num_examples: int | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        class_names: Sequence[str] | None = None,
        topk: int = 10,
        topk_signs: Sign | Sequence[Sign] = ("abs",),
        fold: FoldMode = "auto",
        fold_budget_mb: float = 2048,
        journal_buffer_mb: float = 256,
        codec: Codec = "lz4",
        r_dtype: RDtype = "float32",
        journal_dtype: JournalDtype = "float32",
        journal_delta: JournalDelta = "stored",
        overwrite: bool = False,
        on_error: OnError = "raise",
        storage_options: dict[str, Any] | None = None,
        background_writer: bool = True,
    ) -> None:
        if num_examples is not None and int(num_examples) <= 0:
            raise ValueError(f"num_examples must be positive, got {num_examples}")
        self.session = RecordingSession(
            store,
            layers=layers,
            granularity=granularity,
            batch_share=batch_share,
            attribution=attribution,
            share_rule=share_rule,
            topk=topk,
            topk_signs=topk_signs,
            fold=fold,
            fold_budget_mb=fold_budget_mb,
            journal_buffer_mb=journal_buffer_mb,
            codec=codec,
            r_dtype=r_dtype,
            journal_dtype=journal_dtype,
            journal_delta=journal_delta,
            overwrite=overwrite,
            on_error=on_error,
            storage_options=storage_options,
            background_writer=background_writer,
            info=rank_zero_info,
        )
        self.ids_key = ids_key
        self.num_examples = None if num_examples is None else int(num_examples)
        self.labels = None if labels is None else np.asarray(labels)
        self.class_names = None if class_names is None else check_class_names(class_names, None)
        self.fold_report: FoldReport | None = None
        # Per fit; no threads, locks or open stores before fit, so the callback pickles for ddp_spawn.
        self._reset_fit_state()

    def _reset_fit_state(self) -> None:
        self._tracker: SamplerIdTracker | None = None
        self._restore_strategy: Callable[[], None] | None = None
        self._pending_ids: list[np.ndarray] = []
        self._last_global_step = 0
        self._checked_first_batch = False

    def __getattr__(self, name: str) -> Any:
        # The recording settings read as the callback's own attributes (cb.granularity, cb.store_path...).
        if name in _SESSION_SETTINGS:
            return getattr(self.session, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def state_key(self) -> str:
        return self._generate_state_key(store=self.store_path)

    @property
    def store(self) -> ResponsibilityStore:
        """The store written by the last fit (opened read-only when not training)."""
        store = self.session.store
        if store is not None:
            return store
        return ResponsibilityStore.open(self.store_path, storage_options=self.session.storage_options)

    # ------------------------------------------------------------------ setup
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        _check_strategy(trainer)
        self.session.track(pl_module)
        if self.ids_key is None:
            self._tracker = SamplerIdTracker()
            self._restore_strategy = _track_train_dataloaders(trainer, self._tracker)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fold_report = None  # first, so a fit that fails to start shows no earlier fit's report
        num_examples, labels, class_names = self._dataset_facts(trainer)
        batch = getattr(trainer.train_dataloader, "batch_size", None) or 1
        _on_every_rank(
            trainer,
            lambda: self.session.start(
                num_examples,
                labels=labels,
                class_names=class_names,
                optimizers=trainer.optimizers,
                examples_per_step=int(batch) * trainer.accumulate_grad_batches,
                steps_per_epoch=_steps_per_epoch(trainer),
                writer=trainer.is_global_zero,
            ),
        )
        self._last_global_step = trainer.global_step
        self._pending_ids = []

    def _dataset_facts(self, trainer: pl.Trainer) -> tuple[int, np.ndarray | None, list[str] | None]:
        loader = trainer.train_dataloader
        dataset = loader.dataset if isinstance(loader, DataLoader) else None
        if self.ids_key is None:
            if not isinstance(loader, DataLoader) or self._tracker is None or self._tracker.loader is not loader:
                raise ExampleIdError(
                    "cannot learn example ids from the sampler: the training data is not a single map-style "
                    f"torch DataLoader (got {type(loader).__name__}).",
                    fixes=[{"ids_key": ..., "num_examples": ...}],
                )
        num_examples = self.num_examples or dataset_length(dataset)
        if num_examples is None:
            raise ExampleIdError("the training dataset has no length", fixes=[{"num_examples": ...}])
        labels = self.labels
        if labels is None and dataset is not None:
            labels = dataset_labels(dataset, num_examples)
        names = self.class_names
        if names is None and dataset is not None:
            names = dataset_class_names(dataset)
            try:
                check_class_names(names, labels)
            except ValueError:
                names = None  # the dataset's names describe other labels (e.g. remapped classes): store none
        return num_examples, labels, names

    # ------------------------------------------------------------------ per batch
    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # setup() made a tracker exactly when ids come from the sampler rather than the batch.
        if self._tracker is not None:
            ids = as_ids(self._tracker.next_ids())
        elif self.ids_key is not None:
            ids = ids_from_batch(batch, self.ids_key)
        else:
            raise RuntimeError("ResponsibilityCallback.setup() was not called before training")
        if not self._checked_first_batch:
            n = batch_length(batch) if self.ids_key is None else None
            if n is not None and n != len(ids):
                raise ExampleIdError(
                    f"the sampler yielded {len(ids)} indices for a batch of {n} examples: the DataLoader's "
                    "sampler does not describe its batches (custom collate?).",
                    fixes=[{"ids_key": ...}],
                )
            self._checked_first_batch = True
        check_ids(ids, self.session.num_examples or np.iinfo(np.int64).max)
        self._pending_ids.append(ids)

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not self.session.opened:  # the first step: the backward pass has shown the layers' inputs
            _on_every_rank(trainer, self.session.open)
        self.session.snapshot(p for group in optimizer.param_groups for p in group["params"])

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._last_global_step:
            return  # accumulating gradients: the step that covers this micro-batch comes later
        self._last_global_step = trainer.global_step
        ids = np.concatenate(self._pending_ids) if self._pending_ids else np.zeros(0, np.int64)
        self._pending_ids = []
        examples = self.session.take_examples()
        if trainer.world_size > 1:
            ids, examples = _gather_step(trainer, ids, examples)
        self.session.record_step(ids, global_step=trainer.global_step, epoch=trainer.current_epoch, examples=examples)

    # ------------------------------------------------------------------ flushing, folding, resume
    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The write overlaps the next epoch; a checkpoint (state_dict) and the fit's end wait for it.
        self.session.flush(wait=False)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.session.opened:  # not a single step: the store is still made (or rolled back)
            _on_every_rank(trainer, self.session.open)
        # On a GPU run the fold's scatter-adds run on the training device too.
        self.fold_report = self.session.finish(device=pl_module.device if pl_module.device.type == "cuda" else "cpu")

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.session.close()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.session.detach()
        if self._restore_strategy is not None:
            self._restore_strategy()
        self._reset_fit_state()

    @override
    def state_dict(self) -> dict[str, Any]:
        return self.session.state_dict()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.session.load_state_dict(state_dict)


def _on_every_rank(trainer: pl.Trainer, action: Callable[[], None]) -> None:
    """Run ``action`` (which touches the store on rank 0); its error is raised on every rank, so that DDP peers
    do not wait for a rank that failed."""
    error: BaseException | None = None
    try:
        action()
    except Exception as exc:
        if trainer.world_size == 1:
            raise
        error = exc
    first = trainer.strategy.broadcast(error, src=0)
    if first is not None:
        raise first
    if error is not None:
        raise error


def _steps_per_epoch(trainer: pl.Trainer) -> int | None:
    """Optimizer steps in an epoch, or None when the loader's length is unknown (an iterable dataset)."""
    batches = trainer.num_training_batches
    if not math.isfinite(batches) or batches <= 0:
        return None
    # The last, incomplete accumulation of an epoch steps too.
    return math.ceil(int(batches) / trainer.accumulate_grad_batches)


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


def _gather_step(
    trainer: pl.Trainer, ids: np.ndarray, examples: torch.Tensor | None
) -> tuple[np.ndarray, torch.Tensor | None]:
    """All ranks' ids of this step and, per example, their captured values, rank by rank (a DistributedSampler's
    global batch). Shapes differ between ranks, so rows are padded to the longest for the fixed-shape all-gather."""
    strategy = trainer.strategy
    device = strategy.root_device
    counts = strategy.all_gather(torch.tensor([len(ids)], device=device)).reshape(-1).tolist()
    width = max(counts)
    padded = torch.full((width,), -1, dtype=torch.int64, device=device)
    padded[: len(ids)] = torch.from_numpy(ids).to(device)
    all_ids = strategy.all_gather(padded).reshape(len(counts), width).cpu().numpy()
    ids = np.concatenate([row[:n] for row, n in zip(all_ids, counts, strict=True)])
    if examples is not None:
        rows = examples.new_zeros(width, examples.shape[1])
        rows[: len(examples)] = examples
        all_rows = strategy.all_gather(rows).reshape(len(counts), width, -1)
        examples = torch.cat([part[:n] for part, n in zip(all_rows, counts, strict=True)])
    return ids, examples
