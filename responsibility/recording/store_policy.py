"""A run's store policies, framework-free: the journal's layout, opening or creating the store (refusing a fresh run
into a recorded one), and whether to fold R when the run ends."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from responsibility.choices import FoldMode, OnError
from responsibility.errors import StoreExistsError, StoreWriteError
from responsibility.store import FoldReport, ResponsibilityStore, RunningSums
from responsibility.store.layout import Layout
from responsibility.store.spec import RecordingSpec

__all__ = ["fold_at_end", "journal_layout", "open_run_store", "running_sums", "storage_failure"]


def journal_layout(
    spec: RecordingSpec,
    examples_per_step: int,
    journal_buffer: int,
    settings: Layout,
    steps_per_epoch: int | None = None,
) -> Layout:
    """The store's layout: the user's ``settings`` (top-k index, codec, dtypes) with journal chunks sized so two
    in-flight buffers fit ``journal_buffer`` bytes, and, given ``steps_per_epoch``, so that an epoch fills whole
    chunk rows (its first epoch exactly, if it fits one row)."""
    # A step's buffer holds its journal row and, per example, the per-example values.
    row_bytes = 4 * (spec.journal_width + spec.example_width * max(1, examples_per_step))
    chunk_steps = int(max(1, min(256, journal_buffer // (2 * row_bytes))))
    # Up to ~4 MiB journal chunks: big enough to write at disk speed, narrow enough to read one weight's column
    # (the bytes read per step and column are set here, by the tallest chunk row the buffers allow).
    cols = int(max(1024, (4 << 20) // (4 * chunk_steps)))
    if steps_per_epoch is not None and steps_per_epoch > 0:
        # The epoch-end flush writes a partly filled chunk row padded to its full height (zarr encodes whole
        # chunks): an epoch of 79 steps in 256-step chunks encoded 3.2x its bytes there. Split the epoch evenly.
        rows_per_epoch = -(-steps_per_epoch // chunk_steps)
        chunk_steps = -(-steps_per_epoch // rows_per_epoch)
    return dataclasses.replace(settings, chunk_steps=chunk_steps, journal_chunk_cols=cols)


def open_run_store(
    path: str,
    spec: RecordingSpec,
    *,
    labels: np.ndarray | None,
    class_names: list[str] | None,
    resume: int | None,
    overwrite: bool,
    layout: Layout,
    storage_options: dict[str, Any] | None,
    info: Callable[[str], object],
    meta: dict[str, Any],
) -> ResponsibilityStore:
    """Open the store of a run and roll it back to ``resume``, or create it for a fresh run.

    Raises :class:`StoreMismatchError` for a store recorded with another model, data or settings, and
    :class:`StoreExistsError` for a fresh run into a store with recorded steps unless ``overwrite``.
    """
    if ResponsibilityStore.exists(path, storage_options=storage_options):
        if resume is not None or not overwrite:
            store = ResponsibilityStore.open(path, mode="r+", storage_options=storage_options)
            store.check_compatible(spec, labels)
            if resume is not None:
                store.rollback(resume)
                info(f"responsibility: resuming store {path} at step {resume}")
                return store
            if store.steps > 0:
                raise StoreExistsError(
                    f"store {path} already holds {store.steps} recorded steps. Resume training from its "
                    "checkpoint (trainer.fit(ckpt_path=...)), or start over.",
                    fixes=[{"store": ...}, {"overwrite": True}],
                )
            # An empty store (perhaps half made by a killed run) holds nothing: make it afresh below.
    elif resume:
        raise FileNotFoundError(f"the checkpoint was recorded into {path}, which no longer exists")
    return ResponsibilityStore.create(
        path,
        spec,
        layout=layout,
        labels=labels,
        class_names=class_names,
        info=meta,
        overwrite=True,
        storage_options=storage_options,
    )


def running_sums(store: ResponsibilityStore, mode: FoldMode, budget_bytes: int) -> RunningSums | None:
    """R summed while recording, for a fold at the end that writes it without reading the journal back: for a new
    store that will be folded at the end and whose R (both signs) fits a quarter of ``budget_bytes``. The fold may
    use the whole budget once training is over; the sums hold R for the whole run, beside the model and data."""
    fresh = store.steps == 0 and not any(store.folded_steps(name) for name in store.parameters)
    if mode == "never" or not fresh or _r_bytes(store) > budget_bytes // 4:
        return None
    return store.running_sums()


def fold_at_end(
    store: ResponsibilityStore,
    mode: FoldMode,
    budget_bytes: int,
    device: torch.device | str,
    info: Callable[[str], object],
    sums: RunningSums | None = None,
) -> FoldReport | None:
    """Fold R after the run when ``mode`` says so (``"auto"``: when R of both signs fits ``budget_bytes``), from
    the running ``sums`` where they cover the journal."""
    r_bytes = _r_bytes(store)
    if mode == "always" or (mode == "auto" and r_bytes <= budget_bytes):
        report = store.fold(budget_bytes=budget_bytes, device=device, sums=sums)
        if report is not None:
            info(
                f"responsibility: folded {report.steps} steps into R ({report.cells:.3g} cells, "
                f"{report.seconds:.2f} s) at {store.path}"
            )
        return report
    if mode == "auto":
        minutes = store.fold_plan().estimated_seconds / 60
        info(
            f"responsibility: R would take {r_bytes / 2**30:.1f} GiB, more than fold_budget_mb="
            f"{budget_bytes / 2**20:.0f}; the journal is committed at {store.path} and queries form R from it. "
            f"Folding it (`responsibility fold {store.path}`, about {minutes:.0f} min) makes queries fast."
        )
    return None


def _r_bytes(store: ResponsibilityStore) -> int:
    """Bytes of R of both signs in float32, as a fold holds it."""
    return 8 * store.num_examples * sum(p.units for p in store.spec.params)


def storage_failure(on_error: OnError, failure: StoreWriteError, cause: BaseException | None, committed: int) -> None:
    """Apply ``on_error`` to a storage failure: raise it (with advice), or warn that training goes on without
    recording while the store keeps its first ``committed`` steps."""
    if on_error == "raise":
        if not failure.fixes:
            failure = StoreWriteError(failure.problem, fixes=[{"store": ...}, {"on_error": "warn"}])
        raise failure from cause
    warnings.warn(
        f"responsibility: {failure}. Training goes on WITHOUT recording; the store keeps its first {committed} "
        "steps, later ones are not recorded.",
        RuntimeWarning,
        stacklevel=5,
    )
