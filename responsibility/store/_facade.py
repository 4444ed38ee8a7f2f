"""ResponsibilityStore: the public face of a store, composed of its format, journal, fold and read parts.

Layout of a store (all arrays chunked and compressed, no pickle anywhere)::

    zarr.json                       attributes: "responsibility" (spec, layout, version) and "manifest"
    journal/...                     per-step Δw, batch membership, step records (see _journal)
    fold/<p>/g<G>/...               folded R and its top-k index, one generation per fold (see _fold)
    labels               (N,)       per-example labels, when known

The manifest (steps and ids committed, which fold generation holds R for which steps) is written last and
atomically, so a reader sees a consistent state and data past the manifest is ignored. Arrays may be larger
than the manifest says (capacity); nothing beyond it is ever read.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from responsibility.choices import OpenMode, Sign, check_choice
from responsibility.errors import StoreCorruptError, StoreExistsError, StoreMismatchError
from responsibility.kernels import FoldKernel, index_add_fold
from responsibility.store import _fold, _read
from responsibility.store._accumulate import signed
from responsibility.store._arrays import Arrays
from responsibility.store._fold import DEFAULT_FOLD_BUDGET, FoldPlan, FoldReport
from responsibility.store._format import (
    MANIFEST_KEY,
    empty_manifest,
    labels_digest,
    new_metadata,
)
from responsibility.store._journal import Journal, journal_arrays
from responsibility.store._read import DEFAULT_READ_BUDGET, check_sign
from responsibility.store._running import RunningSums
from responsibility.store._state import StoreState
from responsibility.store.layout import Layout, create_arrays
from responsibility.store.location import ATTR_KEY, check_replaceable, check_replaceable_url, is_url, open_zarr_store
from responsibility.store.spec import ParamSpec, RecordingSpec, check_class_names


def _stores_inside(directory: Path) -> str:
    """A hint naming the stores directly inside ``directory`` (a Hydra run directory holds responsibility.zarr)."""
    if not directory.is_dir():
        return ""
    found = sorted(str(p.parent) for p in directory.glob("*/zarr.json"))
    return f"; did you mean {' or '.join(found[:3])}?" if found else ""


class ResponsibilityStore:
    """A responsibility store. Open with :meth:`open`, make with :meth:`create`."""

    def __init__(self, group: zarr.Group, path: str, read_only: bool) -> None:
        self._state = StoreState(group, path, read_only)
        self._arrays = Arrays(self._state)
        self._journal = Journal(self._state, self._arrays)
        self._journal.check()

    # ------------------------------------------------------------------ opening and creating
    @classmethod
    def open(
        cls, path: str | Path, mode: OpenMode = "r", *, storage_options: dict | None = None
    ) -> ResponsibilityStore:
        """Open an existing store; ``mode="r"`` (default) or ``"r+"`` to record into or fold it."""
        check_choice("mode", mode, OpenMode)
        path = str(path)
        if not is_url(path) and not (Path(path) / "zarr.json").exists():
            raise FileNotFoundError(f"no responsibility store at {path} (no zarr.json){_stores_inside(Path(path))}")
        store = open_zarr_store(path, read_only=(mode == "r"), storage_options=storage_options)
        try:
            group = zarr.open_group(store=store, mode=mode)
        except (FileNotFoundError, KeyError) as exc:
            raise FileNotFoundError(f"no responsibility store at {path}") from exc
        except Exception as exc:  # zarr raises many types on malformed JSON: all mean the same to a user
            raise StoreCorruptError(f"{path}/zarr.json cannot be parsed: {exc!r}") from exc
        return cls(group, path, read_only=(mode == "r"))

    @classmethod
    def exists(cls, path: str | Path, *, storage_options: dict | None = None) -> bool:
        """Whether ``path`` holds a Zarr group (of any kind)."""
        path = str(path)
        if not is_url(path):
            return (Path(path) / "zarr.json").exists()
        store = open_zarr_store(path, read_only=True, storage_options=storage_options)
        from zarr.core.sync import sync

        return bool(sync(store.exists("zarr.json")))

    @classmethod
    def create(
        cls,
        path: str | Path,
        spec: RecordingSpec,
        *,
        layout: Layout | None = None,
        labels: np.ndarray | None = None,
        info: dict[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        overwrite: bool = False,
        storage_options: dict | None = None,
    ) -> ResponsibilityStore:
        """Create an empty store for ``spec``. An existing store is an error unless ``overwrite``.

        ``labels``: each training example's class; ``class_names``: the name of every class (label ``c`` is
        ``class_names[c]``), shown by the CLI and reports.
        """
        path = str(path)
        layout = layout or Layout()
        if layout.journal_delta == "derived" and spec.attribution == "per_example" and spec.share_rule != "gradient":
            raise ValueError(
                f"journal_delta='derived' splits each step as c · g_j, the share rule 'gradient' (plain SGD); this "
                f"recording uses {spec.share_rule!r}. Use journal_delta='stored' with it"
            )
        if cls.exists(path, storage_options=storage_options) and not overwrite:
            raise StoreExistsError(f"{path} already exists; pass overwrite=True to replace it")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (spec.num_examples,):
                raise ValueError(f"labels must have shape ({spec.num_examples},), got {labels.shape}")
            labels = labels.astype(np.int64)
        names = check_class_names(class_names, labels)
        if overwrite and not is_url(path) and Path(path).exists():
            check_replaceable(Path(path))
            shutil.rmtree(path)
        store = open_zarr_store(path, read_only=False, storage_options=storage_options)
        if overwrite and is_url(path):
            check_replaceable_url(store, path)  # mode="w" below clears everything under the prefix
        meta = new_metadata(spec, layout, labels, info, names)
        attributes: dict[str, Any] = {ATTR_KEY: meta, MANIFEST_KEY: empty_manifest()}
        # Metadata first: a reader that opens the store while it is being made sees an empty, valid store.
        group = zarr.open_group(store=store, mode="w", attributes=attributes)
        arrays, unshuffled, array_attributes = journal_arrays(spec, layout)
        if labels is not None:
            arrays["labels"] = (labels.shape, "int64", (min(len(labels), 1 << 20),), ("example",))
        created = create_arrays(group, arrays, layout, unshuffled, array_attributes)
        if labels is not None:
            created["labels"][:] = labels
        return cls(group, path, read_only=False)

    def refresh(self) -> None:
        """Re-read the manifest (e.g. to see steps committed by a training run since opening)."""
        self._state.reload()

    # ------------------------------------------------------------------ metadata
    @property
    def path(self) -> str:
        return self._state.path

    @property
    def read_only(self) -> bool:
        return self._state.read_only

    @property
    def spec(self) -> RecordingSpec:
        """What the store records."""
        return self._state.spec

    @property
    def layout(self) -> Layout:
        """How the store's arrays are chunked and encoded."""
        return self._state.layout

    @property
    def labels_digest(self) -> str | None:
        return self._state.labels_digest

    @property
    def info(self) -> dict[str, Any]:
        """Free-form information recorded with the run."""
        return self._state.info

    @property
    def class_names(self) -> list[str] | None:
        """The name of every class (label ``c`` is ``class_names[c]``), when the run gave them."""
        return self._state.class_names

    def class_name(self, label: int) -> str:
        """The name of class ``label``, or the number itself when the store has no names for it."""
        names = self._state.class_names
        return names[label] if names is not None and 0 <= label < len(names) else str(label)

    @property
    def num_examples(self) -> int:
        return self._state.num_examples

    @property
    def parameters(self) -> list[str]:
        """Tracked parameter names, as in ``model.named_parameters()``."""
        return self.spec.names

    @property
    def steps(self) -> int:
        """Optimizer steps committed to the journal."""
        return self._state.steps

    @property
    def num_ids(self) -> int:
        """Example ids committed to the journal (sum of batch sizes over steps)."""
        return self._state.num_ids

    @property
    def generation(self) -> int:
        return self._state.generation

    def folded_steps(self, name: str) -> int:
        """How many journal steps the stored R of ``name`` covers (0: not folded)."""
        return self._state.folded_steps(name)

    @property
    def labels(self) -> np.ndarray | None:
        """Per-example labels recorded with the run, or None."""
        if self.labels_digest is None:
            return None
        arr = self._arrays.open("labels", "int64", lambda s: s == (self.num_examples,))
        try:
            labels = np.asarray(arr[:])
        except Exception as exc:
            raise StoreCorruptError(f"{self.path}/labels: unreadable chunk ({exc!r})") from exc
        # Labels may legitimately be negative, so a lost chunk (fill -1) is caught by the digest instead.
        if labels_digest(labels) != self.labels_digest:
            raise StoreCorruptError(f"{self.path}/labels: labels do not match their recorded digest")
        return labels

    def param(self, name: str) -> ParamSpec:
        return self.spec.param(name)

    def summary(self) -> dict[str, Any]:
        """What was recorded, for ``responsibility inspect``."""
        scales = self.journal_scales()
        params = [
            {
                **p.to_json(),
                "columns": p.units,
                "folded_steps": self.folded_steps(p.name),
                "fold_group": self._state.fold_path(p.name),
                "r_bytes": 2 * np.dtype(self.layout.r_dtype).itemsize * p.units * self.num_examples,
                # journal_delta="derived": the steps whose Δw was journaled as a scale.
                **({} if scales is None else {"derived_steps": int(np.isfinite(scales[:, k]).sum())}),
            }
            for k, p in enumerate(self.spec.params)
        ]
        return {
            "path": self.path,
            "num_examples": self.num_examples,
            "steps": self.steps,
            "ids": self.num_ids,
            "batch_share": self.spec.batch_share,
            "attribution": self.spec.attribution,
            "labels": self.labels_digest is not None,
            "class_names": self.class_names,
            "layout": self.layout.to_json(),
            "generation": self.generation,
            "info": self.info,
            "parameters": params,
            "orphans": self.orphans(),
        }

    def check_compatible(self, spec: RecordingSpec, labels: np.ndarray | None = None) -> None:
        """Raise :class:`StoreMismatchError` if a run with ``spec`` may not write into this store."""
        diffs = self.spec.differences(spec)
        digest = labels_digest(labels)
        if digest is not None and self.labels_digest is not None and digest != self.labels_digest:
            diffs.append("labels differ from those recorded in the store (dataset changed?)")
        if diffs:
            raise StoreMismatchError(
                f"store {self.path} was recorded with another model, dataset or settings:\n  - "
                + "\n  - ".join(diffs)
                + "\nUse a new store path, or overwrite=True to start over."
            )

    # ------------------------------------------------------------------ journal
    def write_journal(
        self,
        start_step: int,
        rows: np.ndarray,
        ids: np.ndarray,
        ids_start: int,
        steps: np.ndarray,
        examples: np.ndarray | None = None,
        scales: np.ndarray | None = None,
    ) -> None:
        """Write journal rows for steps ``start_step ..`` (not visible until :meth:`commit`).

        ``rows`` is (n, journal_width); ``ids`` the concatenated ids of those steps, starting at flat position
        ``ids_start``; ``steps`` (n, 4): absolute ids_end, global_step, epoch, flags; ``examples``
        (len(ids), example_width): per-example values, required exactly when the store records per example;
        ``scales`` (n, parameters), required exactly when the layout's ``journal_delta`` is "derived": per step and
        parameter the scale c with Δw = c · Σ_j g_j, or inf where the row's Δw counts.
        """
        self._journal.write(start_step, rows, ids, ids_start, steps, examples, scales)

    def running_sums(self) -> RunningSums:
        """In-memory R of every parameter, summed from the journal blocks given to its ``add`` (the arguments of
        :meth:`write_journal`, after it) from this store's current step on. :meth:`fold` with ``sums=`` writes
        R from them instead of reading the journal back; they need 8 bytes per example and unit of memory."""
        return RunningSums(self._state)

    def commit(self, steps: int, ids: int) -> None:
        """Make journal steps ``[0, steps)`` visible to readers."""
        self._journal.commit(steps, ids)

    def rollback(self, steps: int) -> None:
        """Forget journal steps past ``steps`` (resume from an earlier checkpoint).

        Folds covering forgotten steps are dropped: R is re-derived from the journal, never un-added.
        """
        self._journal.rollback(steps)

    def journal_rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Committed journal ``[start, stop)``: rows (n, journal_width), their ids, and (n, 4) step records. In a
        ``journal_delta="derived"`` store a derived step's cells are NaN (:meth:`journal_scales` has its c)."""
        return self._journal.rows(start, stop)

    def journal_scales(self, start: int = 0, stop: int | None = None) -> np.ndarray | None:
        """A ``journal_delta="derived"`` store's scales of committed steps ``[start, stop)``, (steps, parameters):
        c where a step's Δw is c · Σ_j g_j (each example's share is c · g_j), inf where its Δw is journaled; None
        for a store that journals every Δw."""
        stop = self.steps if stop is None else stop
        if not 0 <= start <= stop <= self.steps:
            raise IndexError(f"journal steps [{start}, {stop}) outside committed [0, {self.steps})")
        return self._journal.scales(start, stop)

    def param_rows(self, name: str, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """One parameter's journal values for steps ``[start, stop)``, by kind (delta, or pos and neg); NaN at a
        derived step (:meth:`journal_scales`)."""
        return self._journal.param_rows(name, start, self.steps if stop is None else stop)

    def membership(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Example ids of steps ``[start, stop)`` and the number of ids of each step."""
        ids, counts, _ = self._journal.membership(start, self.steps if stop is None else stop)
        return ids, counts

    def journal_examples(self, start: int, stop: int) -> np.ndarray:
        """Per-example values (per-example attribution) of the ids of committed steps ``[start, stop)``."""
        return self._journal.examples(start, stop)

    def meta(self) -> np.ndarray:
        """(steps, 3) int64: global_step, epoch, flags of every committed step."""
        return self._journal.meta()

    # ------------------------------------------------------------------ folding
    def fold(
        self,
        parameters: Sequence[str] | None = None,
        *,
        budget_bytes: int = DEFAULT_FOLD_BUDGET,
        kernel: FoldKernel = index_add_fold,
        device: str | torch.device = "cpu",
        sums: RunningSums | None = None,
    ) -> FoldReport:
        """Fold the committed journal into R and rebuild the top-k index, within ``budget_bytes`` of memory.

        Incremental: only steps past each parameter's last fold are added. Each parameter's new R is written
        to a fresh generation and made visible by its own manifest write, so a crash or Ctrl-C mid-fold keeps
        the parameters already folded and the old R of the others. (Under Ctrl-C the fold stops at the end of
        the current block, removes the unfinished generation and raises KeyboardInterrupt; a second Ctrl-C
        interrupts at once.) Generations no manifest references, left by a killed fold, are removed first.
        ``device="cuda"`` runs the scatter-adds on the GPU (the budget then bounds GPU memory), in the CPU's order
        (no atomics), so uniform R has the CPU's bits; per-example shares, formed there by matrix products, differ
        by a few ulps. The folded blocks come to the host through page-locked memory, which torch's caching host
        allocator keeps for later folds. ``sums``
        (:meth:`running_sums`) give R of each parameter not folded before whose sums cover every committed step:
        it is written as it is (the same floats), the journal is not read for it.
        """
        return _fold.fold(self._journal, parameters, budget_bytes, kernel, torch.device(device), sums)

    def fold_plan(self, parameters: Sequence[str] | None = None) -> FoldPlan:
        """What :meth:`fold` would do (parameters, cells to add, bytes to write), without doing it."""
        return _fold.plan(self._journal, parameters)

    def orphans(self) -> list[str]:
        """Fold generations left by an interrupted or killed fold (not referenced; the next fold removes them)."""
        return _fold.orphans(self._journal)

    def fold_group(self, name: str) -> str | None:
        """The Zarr group of the current fold of ``name`` (``fold/<name>/g<G>``), or None if not folded.

        Readers without this library find the same name in the ``current`` attribute of ``fold/<name>``.
        """
        self.spec.param(name)
        return self._state.fold_path(name)

    def fold_array(self, name: str, which: str) -> zarr.Array:
        """An array of the current fold of ``name``: ``pos``/``neg`` R or ``top_<sign>_ids``/``_values``.

        Checked against the spec and manifest; for Dask and other readers that work chunk by chunk.
        """
        if name not in self._state.manifest["folded"]:
            raise KeyError(f"{name!r} has no fold in {self.path}; run store.fold() or `responsibility fold`")
        return self._arrays.fold(name, which)

    def topk_index(
        self, name: str, sign: Sign = "abs", columns: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The stored top-k index of ``name`` (ids, values: ``(depth, columns)``), or None unless it is current
        and ``sign`` is one of ``layout.topk_signs``."""
        return _read.topk_index(self._journal, name, sign, columns)

    # ------------------------------------------------------------------ reading
    def read(
        self,
        name: str,
        sign: Sign = "abs",
        *,
        weights: Sequence[int] | np.ndarray | None = None,
        steps: tuple[int, int] | None = None,
        max_bytes: int = DEFAULT_READ_BUDGET,
    ) -> np.ndarray:
        """R of parameter ``name``: shape ``(num_examples, *r_shape)``, or ``(num_examples, len(weights))``.

        ``weights`` selects flat weight (or unit) indices. Whatever part of the journal is not folded yet is
        folded on the fly for just the requested columns, so this works before, during and after a fold.
        ``steps=(start, stop)`` gives R over journal steps ``[start, stop)`` only (e.g. :meth:`epoch_steps`),
        folded from the journal.
        """
        return _read.read(self._journal, name, sign, weights, steps, max_bytes)

    def most_responsible(
        self,
        name: str,
        k: int = 1,
        sign: Sign = "abs",
        *,
        weights: Sequence[int] | np.ndarray | None = None,
        budget_bytes: int = DEFAULT_FOLD_BUDGET,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most responsible example ids of every weight of ``name`` and their R values.

        Returns ``(ids, values)``, each of shape ``(k, *r_shape)``, best first; ties go to the smaller id. With
        ``weights`` (flat indices, repeats allowed) only those columns: ``(k, len(weights))``. Served from the
        top-k index when it is current, deep enough and of this sign (``layout.topk_signs``), else computed from R
        of just the asked columns (the part of the journal not folded yet summed on the fly), block by block within
        ``budget_bytes``.
        """
        return self._state.after_newer_commit(
            lambda: _read.most_responsible(self._journal, name, k, sign, weights, budget_bytes)
        )

    def iter_blocks(
        self,
        name: str,
        sign: Sign = "abs",
        budget_bytes: int = DEFAULT_FOLD_BUDGET,
        steps: tuple[int, int] | None = None,
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(columns, R[:, columns])`` blocks of a parameter's flat R within a memory budget."""
        check_sign(sign)
        for cols, pos, neg in self.iter_parts(name, budget_bytes, steps):
            yield cols, signed(pos, neg, sign).numpy()

    def iter_parts(
        self, name: str, budget_bytes: int = DEFAULT_FOLD_BUDGET, steps: tuple[int, int] | None = None
    ) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
        """Yield ``(columns, R_pos, R_neg)`` column blocks (float32 tensors), each part read or folded once.

        ``steps=(start, stop)``: R over journal steps ``[start, stop)`` only, as in :meth:`read`.
        """
        p = self.spec.param(name)
        window = _read.check_window(self._journal, steps)
        yield from _read.parts(self._journal, p, budget_bytes, window)

    def epoch_steps(self, epochs: int | Sequence[int]) -> tuple[int, int]:
        """The journal step window ``(start, stop)`` of a training epoch, or of consecutive epochs.

        Epochs are numbered as Lightning's ``current_epoch``; negative numbers count back from the last recorded
        epoch (``-1`` = the last). For :meth:`read` / :meth:`iter_parts` ``steps=...``.
        """
        return _read.epoch_steps(self._journal, epochs)
