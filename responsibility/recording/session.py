"""RecordingSession: one training run recorded into a responsibility store, framework-free.

The Lightning callback is a thin adapter over it; a plain PyTorch loop uses it directly::

    session = RecordingSession("run.zarr", layers="fc")
    session.track(model)
    session.start(len(train_set), optimizers=[opt], examples_per_step=batch_size, steps_per_epoch=len(loader))
    for x, y, ids in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        session.snapshot()  # before the step
        opt.step()
        session.record_step(ids)
    session.finish()  # flush, then fold R when it fits fold_budget_mb

It owns the policies of a run: which parameters are tracked, opening or creating the store (and refusing a fresh
run into a recorded one unless ``overwrite``), rolling back to a resumed checkpoint's step, what a storage failure
does (``on_error``), flushing, and whether to fold at the end (the store-facing parts in
:mod:`responsibility.recording.store_policy`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from responsibility.choices import (
    AttributionSetting,
    BatchShare,
    Codec,
    FoldMode,
    JournalDelta,
    JournalDtype,
    OnError,
    RDtype,
    ShareRule,
    ShareRuleSetting,
    Sign,
    check_choice,
)
from responsibility.errors import (
    ExampleIdError,
    OptimizerMismatchError,
    ParameterChangedError,
    ResponsibilityError,
    StoreWriteError,
)
from responsibility.recording.attribution import PerExample
from responsibility.recording.per_example import default_rule
from responsibility.recording.recorder import Recorder
from responsibility.recording.selection import select_parameters, validate_granularity
from responsibility.recording.store_policy import (
    fold_at_end,
    journal_layout,
    open_run_store,
    running_sums,
    storage_failure,
)
from responsibility.store import FoldReport, ResponsibilityStore
from responsibility.store.layout import Layout, sign_set
from responsibility.store.location import check_location
from responsibility.store.spec import ParamSpec, RecordingSpec, check_class_names

__all__ = ["RecordingSession"]

log = logging.getLogger(__name__)


class _Run(NamedTuple):
    """What :meth:`RecordingSession.start` learnt, for :meth:`RecordingSession.open`."""

    num_examples: int
    labels: np.ndarray | None
    class_names: list[str] | None
    rule: ShareRule
    examples_per_step: int
    steps_per_epoch: int | None
    resume: int | None
    writer: bool


class RecordingSession:
    """Records the responsibility of every training example for the tracked weights of one model.

    Args:
        store: directory of the Zarr v3 store (or an fsspec URL such as ``s3://bucket/run.zarr``).
        layers: module or parameter names to track, glob patterns allowed; ``None`` = all trainable parameters.
        granularity: ``"weight"`` (one R value per weight), ``"neuron"`` (per output unit, summing the unit's
            incoming |Δw|), or a mapping from patterns to either; later entries override earlier ones.
        batch_share: ``"full"`` gives every example of a step the whole |Δw| (the paper); ``"mean"`` divides
            it by the number of examples in the step. Uniform attribution only.
        attribution: ``"auto"`` (default): per example where that applies, uniformly elsewhere, with one warning
            naming the parameters recorded uniformly and why; ``"per_example"``: Δw is split among the step's
            examples by their own gradients (weights and biases of nn.Linear and nn.Conv2d layers; other
            parameters are refused); ``"uniform"``: the paper, every example of a step gets the step's Δw. See
            docs/attribution.md.
        share_rule: per-example split: ``"gradient"`` (exact for plain SGD), ``"magnitude"`` (for momentum, Adam,
            weight decay) or ``"auto"``: gradient when every optimizer of tracked weights is plain SGD.
        topk: depth of the per-weight top-k index built by a fold (0: none).
        topk_signs: the signs of R the index ranks (``"abs"``, ``"pos"``, ``"neg"``); default ``("abs",)``, the
            paper's R. Queries of another sign read R's columns instead; each sign indexed adds to every fold.
        fold: ``"auto"`` folds at the end when R (both signs) fits ``fold_budget_mb``; ``"always"``/``"never"``.
        fold_budget_mb: size limit for the automatic fold, and the memory budget of folding (GPU memory when
            folding on CUDA). A new store folded at the end whose R fits a quarter of it sums R while
            recording (in the writer thread, holding R in memory), so the end writes R without reading the journal
            back.
        journal_buffer_mb: memory for the two in-flight journal buffers; sets the steps per journal chunk.
        codec: ``"lz4"`` (default), ``"zstd"`` or ``"none"``: lossless compression of all arrays.
        r_dtype: ``"float32"`` (default) or ``"float16"``: opt-in lossy storage of the folded R (relative error
            at most 2^-11; the journal, running sums and the top-k index stay exact; signs not in ``topk_signs``
            are ranked from the rounded R).
        journal_dtype: ``"float32"`` (default, exact) or ``"bfloat16"``: opt-in compact journal, half the bytes
            per step; each Δw is rounded to bfloat16 (relative error at most 2^-8 per step) before it is summed.
        journal_delta: ``"stored"`` (default, exact) or ``"derived"``: with plain SGD and per-example attribution,
            a per-example parameter's step whose Δw is c · Σ_j g_j (to within 2^-20 of the parameter's largest
            weight, checked every step) journals c instead of Δw, and each example's share is c · g_j (summed per
            unit at neuron granularity); other steps journal Δw. Needs the share rule "gradient". See
            :mod:`responsibility.recording.derived`.
        overwrite: replace an existing store when a fresh (non-resumed) run starts.
        on_error: what a storage failure (full disk, read-only location, lost connection) does: ``"raise"``
            stops training with :class:`StoreWriteError`; ``"warn"`` warns and lets training go on without
            recording. Either way the store keeps its last commit. Bad settings or ids always raise.
        storage_options: fsspec options for URL stores.
        background_writer: write full journal chunks from a background thread while training goes on.
        info: where progress messages (resuming, folded) go; the module's logger by default.
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
        info: Callable[[str], object] = log.info,
    ) -> None:
        check_choice("batch_share", batch_share, BatchShare)
        check_choice("attribution", attribution, AttributionSetting)
        check_choice("share_rule", share_rule, ShareRuleSetting)
        if attribution != "uniform" and batch_share != "full":
            raise ValueError(
                f"batch_share={batch_share!r} applies to attribution='uniform' (per-example shares already sum to "
                f"Δw); got attribution={attribution!r}"
            )
        check_choice("fold", fold, FoldMode)
        check_choice("on_error", on_error, OnError)
        if fold_budget_mb <= 0 or journal_buffer_mb <= 0:
            raise ValueError("fold_budget_mb and journal_buffer_mb must be positive")
        if isinstance(granularity, Mapping):
            granularity = dict(granularity)  # Hydra passes DictConfig
        validate_granularity(granularity)
        # The store's settings, checked now rather than when the run starts; the journal's chunking is added then.
        self.layout_settings = Layout(
            topk=int(topk),
            topk_signs=sign_set("topk_signs", topk_signs),
            codec=codec,
            r_dtype=r_dtype,
            journal_dtype=journal_dtype,
            journal_delta=journal_delta,
        )
        if journal_delta == "derived" and (attribution == "uniform" or share_rule == "magnitude"):
            raise ValueError(
                "journal_delta='derived' journals plain SGD's per-example steps as c · g_j: it needs attribution "
                f"'auto' or 'per_example' and share_rule 'auto' or 'gradient'; got attribution={attribution!r}, "
                f"share_rule={share_rule!r}"
            )
        self.store_path = check_location(store)
        self.layers = (
            [str(x) for x in layers] if isinstance(layers, Sequence) and not isinstance(layers, str) else layers
        )
        self.granularity = granularity
        self.batch_share = batch_share
        self.attribution = attribution
        self.share_rule = share_rule
        self.fold = fold
        self.fold_budget = int(fold_budget_mb * 2**20)
        self.journal_buffer = int(journal_buffer_mb * 2**20)
        self.overwrite = overwrite
        self.on_error = on_error
        self.storage_options = storage_options
        self.background_writer = background_writer
        self.info = info
        # Kept across runs (a resumed or repeated fit continues the store); no threads, locks or open stores
        # before start(), so an adapter holding a session pickles (Lightning's ddp_spawn).
        self.steps = 0  # optimizer steps recorded into the store so far
        self.num_ids = 0
        self.stopped_at: int | None = None  # steps the store kept when a storage failure stopped recording
        self._loaded: dict[str, Any] | None = None
        self._reset_run()

    def _reset_run(self) -> None:
        self._tracked: list[tuple[ParamSpec, nn.Parameter]] = []
        self._owners: list[tuple[str, nn.Module, str, nn.Parameter]] = []
        self._per_example: PerExample | None = None
        self._run: _Run | None = None  # start()'s settings until open() uses them
        self._spec: RecordingSpec | None = None
        self._recorder: Recorder | None = None
        self._store: ResponsibilityStore | None = None
        self.num_examples: int | None = None

    # The store settings, as given (read from the one Layout that checked them).
    @property
    def topk(self) -> int:
        return self.layout_settings.topk

    @property
    def topk_signs(self) -> tuple[Sign, ...]:
        return self.layout_settings.topk_signs

    @property
    def codec(self) -> Codec:
        return self.layout_settings.codec

    @property
    def r_dtype(self) -> RDtype:
        return self.layout_settings.r_dtype

    @property
    def journal_dtype(self) -> JournalDtype:
        return self.layout_settings.journal_dtype

    @property
    def journal_delta(self) -> JournalDelta:
        return self.layout_settings.journal_delta

    # ------------------------------------------------------------------ the model
    @property
    def tracked(self) -> list[tuple[ParamSpec, nn.Parameter]]:
        """The tracked parameters with their specs (after :meth:`track`; per-example forms after :meth:`open`)."""
        return list(self._tracked)

    def track(self, model: nn.Module) -> None:
        """Choose the parameters of ``model`` to record and, for per-example attribution, hook their layers.

        Raises :class:`LayerSelectionError` for patterns that match nothing or parameters that cannot be recorded
        as asked, before anything is written.
        """
        self.detach()
        tracked = select_parameters(model.named_parameters(), self.layers, self.granularity)
        # Where each tracked tensor lives, to notice cheaply at every step if user code swapped it out.
        owners = [
            (spec.name, model.get_submodule(spec.name.rpartition(".")[0]), spec.name.rpartition(".")[2], param)
            for spec, param in tracked
        ]
        if self.attribution != "uniform":
            self._per_example = PerExample(model, owners, self.attribution)
        self._tracked, self._owners = tracked, owners

    # ------------------------------------------------------------------ starting a run
    def start(
        self,
        num_examples: int,
        *,
        labels: np.ndarray | None = None,
        class_names: Sequence[str] | None = None,
        optimizers: Sequence[torch.optim.Optimizer] = (),
        examples_per_step: int = 1,
        steps_per_epoch: int | None = None,
        writer: bool = True,
    ) -> None:
        """Get ready to record (after :meth:`track`); the store is opened by :meth:`open`, at the first snapshot.

        A run continues the store where the last checkpoint loaded by :meth:`load_state_dict` left off (rolling
        back steps recorded after it), or where this session's previous run stopped; otherwise it is a fresh run,
        refused by :meth:`open` if the store already holds recorded steps unless ``overwrite``. A new store keeps
        ``labels`` and ``class_names`` (label ``c`` is ``class_names[c]``). ``optimizers`` resolve
        ``share_rule="auto"``; ``examples_per_step`` and ``steps_per_epoch`` (optimizer steps, if known) size the
        journal's chunks. With several processes only one ``writer`` opens the store; the others keep count, so
        every process's :meth:`state_dict` agrees.
        """
        if not self._tracked:
            raise RuntimeError("call track(model) before start()")
        num_examples = int(num_examples)
        if labels is not None and np.shape(labels) != (num_examples,):
            raise ValueError(f"labels has shape {np.shape(labels)}, expected ({num_examples},)")
        names = check_class_names(class_names, None if labels is None else np.asarray(labels))
        rule: ShareRule = "gradient"  # only per-example stores use a rule; uniform ones keep the spec's default
        if self.share_rule != "auto":
            rule = self.share_rule
        elif self._per_example is not None:
            rule = default_rule(optimizers, [p for _, p in self._tracked])
        if self.journal_delta == "derived" and rule != "gradient":
            raise OptimizerMismatchError(
                "journal_delta='derived' needs plain SGD (torch.optim.SGD without momentum or weight decay): an "
                "optimizer of the tracked parameters is not, so share_rule 'auto' chose 'magnitude'.",
                fixes=[{"journal_delta": "stored"}],
            )
        loaded = self._loaded
        resume = loaded["steps"] if loaded is not None else (self.steps or None)
        if loaded is not None:
            self.stopped_at = loaded["stopped_at"]
        if writer and self.stopped_at is not None:
            warnings.warn(
                f"responsibility: recording into {self.store_path} stopped at step {self.stopped_at} after a "
                "storage failure; this run does not record",
                RuntimeWarning,
                stacklevel=2,
            )
        self._run = _Run(num_examples, labels, names, rule, examples_per_step, steps_per_epoch, resume, writer)
        self.num_examples = num_examples
        self.steps = resume or 0
        self.num_ids = loaded["ids"] if loaded is not None else self.num_ids
        self._loaded = None

    @property
    def opened(self) -> bool:
        """Whether :meth:`open` has run since :meth:`start`."""
        return self._spec is not None

    def open(self) -> None:
        """Settle each parameter's per-example form from what the backward passes so far showed (the first
        :meth:`snapshot` calls this), then open or create the store on the writer, rolling back to a resumed
        checkpoint's step. Raises :class:`StoreMismatchError` for a store recorded with another model, data or
        settings, and :class:`StoreExistsError` for a fresh run into a store with recorded steps."""
        run = self._run
        if run is None or self._spec is not None:
            return
        specs = [s for s, _ in self._tracked]
        if self._per_example is not None:
            specs = self._per_example.decide(
                specs,
                warn=run.writer and self.stopped_at is None,
                rule=run.rule,
                derived=self.journal_delta == "derived",
            )
        self._tracked = [(s, p) for s, (_, p) in zip(specs, self._tracked, strict=True)]
        per_example = any(s.example_form is not None for s in specs)
        spec = RecordingSpec(
            tuple(specs),
            run.num_examples,
            self.batch_share,
            "per_example" if per_example else "uniform",
            run.rule if per_example else "gradient",
        )
        if run.writer and self.stopped_at is None:
            with self._storage_guard():
                self._store = open_run_store(
                    self.store_path,
                    spec,
                    labels=run.labels,
                    class_names=run.class_names,
                    resume=run.resume,
                    overwrite=self.overwrite,
                    layout=journal_layout(
                        spec, run.examples_per_step, self.journal_buffer, self.layout_settings, run.steps_per_epoch
                    ),
                    storage_options=self.storage_options,
                    info=self.info,
                    meta={"layers": self.layers, "granularity": self.granularity, "created_by": type(self).__name__},
                )
                sums = running_sums(self._store, self.fold, self.fold_budget)
                self._recorder = Recorder(self._store, self._tracked, background=self.background_writer, sums=sums)
        self._spec = spec

    # ------------------------------------------------------------------ per step
    @property
    def store(self) -> ResponsibilityStore | None:
        """The store this run writes (None before :meth:`start`, on non-writer processes, and after the run)."""
        return self._store

    @property
    def recording(self) -> bool:
        """Whether steps are being written (False before start, after finish or a storage failure)."""
        return self._recorder is not None

    def snapshot(self, params: Iterable[torch.nn.Parameter] | None = None) -> None:
        """Before ``optimizer.step()``: keep the current value of the tracked parameters (all, or those in
        ``params``). Calling it again before :meth:`record_step` keeps the first snapshot. The first call opens
        the store (:meth:`open`)."""
        self.open()
        if self._recorder is not None:
            self._recorder.snapshot(params)

    def take_examples(self) -> torch.Tensor | None:
        """Per-example attribution: the rows captured for the step's examples so far (then forgotten); with several
        processes, gather every process's rows, in the order of their ids, for :meth:`record_step`."""
        return self._per_example.take() if self._per_example is not None else None

    def record_step(
        self,
        ids: np.ndarray | torch.Tensor | Sequence[int],
        *,
        global_step: int = -1,
        epoch: int = -1,
        examples: torch.Tensor | None = None,
    ) -> None:
        """After ``optimizer.step()``: journal the step's Δw with the ids of all its examples (every micro-batch
        and, with several processes, every process's). ``examples`` defaults to :meth:`take_examples`."""
        if examples is None:
            examples = self.take_examples()
        if self.stopped_at is not None:
            return
        for name, module, leaf, param in self._owners:
            if module._parameters.get(leaf) is not param:
                raise ParameterChangedError(
                    f"tracked parameter {name!r} was replaced by another tensor during training; R would silently "
                    "stop following it. Replace parameters before fit, or not at all."
                )
        if examples is not None and len(examples) != len(ids):
            raise ExampleIdError(
                f"per-example attribution: the tracked layers saw {len(examples)} examples in this step, which has "
                f"{len(ids)} example ids. Each tracked layer must run once per example, with the batch in its "
                "input's first dimension (batch_first=True for sequence models)",
                fixes=[{"attribution": "uniform"}],
            )
        recorder, spec = self._recorder, self._spec
        if recorder is not None and spec is not None:
            sums = scales = None
            if examples is not None and self._per_example is not None:
                derived = self.journal_delta == "derived"
                if derived:
                    sums = self._per_example.gradient_sums(examples)
                examples, scales = self._per_example.journal_values(
                    examples, recorder.weight_change, spec.share_rule, derived
                )
            with self._storage_guard():
                recorder.record_step(
                    ids, global_step=global_step, epoch=epoch, examples=examples, grad_sums=sums, scales=scales
                )
        self.steps += 1
        self.num_ids += len(ids)

    # ------------------------------------------------------------------ flushing, finishing, resume
    def flush(self, wait: bool = True) -> None:
        """Write and commit every recorded step; without ``wait``, only start writing them (:meth:`state_dict`
        and :meth:`finish` wait)."""
        if self._recorder is not None:
            with self._storage_guard():
                self._recorder.flush(wait)

    def finish(self, device: torch.device | str = "cpu") -> FoldReport | None:
        """End the run: flush the journal, then fold R (on ``device``) if ``fold`` says so. Returns the fold's
        report, or None when nothing was folded."""
        self.open()  # a run without a single step still makes (or rolls back) its store
        store, recorder = self._store, self._recorder
        if recorder is None or store is None:
            return None
        with self._storage_guard():
            recorder.close()
        if self._recorder is None:  # stopped by a storage failure
            return None
        self._recorder = None
        report = None
        with self._storage_guard():  # the journal is complete either way; a failed fold can be redone
            report = fold_at_end(store, self.fold, self.fold_budget, device, self.info, recorder.sums)
        return report

    def close(self) -> None:
        """Stop recording after an error elsewhere: write what can be written, log (not raise) what cannot."""
        if self._recorder is None:
            return
        recorder, self._recorder = self._recorder, None
        try:
            recorder.close()
        except Exception as exc:  # the original error matters more; say what was not saved
            log.error("responsibility: could not flush the journal after an error: %s", exc)

    def detach(self) -> None:
        """Close, remove the model hooks and forget the model; the step count stays for the next run."""
        self.close()
        if self._per_example is not None:
            self._per_example.detach()
        self._reset_run()

    def state_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint; flushes first, so a checkpoint never points past what the store holds."""
        self.flush()
        return {
            "steps": int(self.steps),
            "ids": int(self.num_ids),
            "store": self.store_path,
            "stopped_at": None if self.stopped_at is None else int(self.stopped_at),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from a checkpoint's state: the next :meth:`start` rolls the store back to it."""
        if "steps" in state:
            stopped = state.get("stopped_at")
            self._loaded = {
                "steps": int(state["steps"]),
                "ids": int(state["ids"]),
                "stopped_at": None if stopped is None else int(stopped),
            }

    # ------------------------------------------------------------------ storage failures
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
        committed = self._store.steps if self._store is not None else 0
        storage_failure(self.on_error, failure, cause, committed)  # raises, or warns and we stop recording
        self.stopped_at = committed
        if self._recorder is not None:
            self._recorder.abort()
            self._recorder = None
