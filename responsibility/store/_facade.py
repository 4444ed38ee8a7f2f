"""The on-disk responsibility store: a Zarr v3 group holding the journal, the folded R and a top-k index.

Layout (all arrays chunked and compressed, no pickle anywhere)::

    zarr.json                       attributes: "responsibility" (spec, layout, version) and "manifest"
    journal/rows         (T, D)     one row per optimizer step: every tracked parameter's values side by side
                                    (RecordingSpec.journal_columns): signed Δw of weight-granularity parameters,
                                    Σ Δw>0 and Σ |Δw<0| per unit of neuron-granularity ones (float32)
    journal/ids          (M,)       example ids of every step, concatenated (int64)
    journal/steps        (T, 4)     ids_end (end offset of the step's ids), global_step, epoch, flags (int64;
                                    flag 1 = non-finite Δw, row zeroed)
    journal/examples     (M, E)     per-example attribution only: each example's journaled gradient values,
                                    aligned with journal/ids (RecordingSpec.example_columns; float32)
    fold/<p>/g<G>/pos    (N, units) folded R_pos (float32); likewise neg
    fold/<p>/g<G>/top_<sign>_ids, top_<sign>_values  (k, units) per-weight top-k index, sign in abs/pos/neg
    labels               (N,)       per-example labels, when known

The manifest (steps and ids committed, which fold generation holds R for which steps) is written last and
atomically, so a reader sees a consistent state and data past the manifest is ignored. Arrays may be larger
than the manifest says (capacity); nothing beyond it is ever read.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import zarr

from responsibility import __version__
from responsibility.choices import SIGNS, OpenMode, Sign, check_choice
from responsibility.errors import BudgetError, StoreCorruptError, StoreExistsError, StoreMismatchError
from responsibility.kernels import FoldKernel, index_add_fold, split_signed, step_groups, topk_desc, topk_rows
from responsibility.kernels.shares import example_grads, needed_columns, shares
from responsibility.store.layout import FLOAT16_MAX, Layout, create_array
from responsibility.store.location import ATTR_KEY, check_replaceable, check_replaceable_url, is_url, open_zarr_store
from responsibility.store.spec import ParamSpec, RecordingSpec

FORMAT_VERSION = 1
MANIFEST_KEY = "manifest"
DEFAULT_FOLD_BUDGET = 1 << 30
DEFAULT_READ_BUDGET = 4 << 30
EXAMPLE_CHUNK_COLS = 1024
T = TypeVar("T")


@dataclass
class FoldReport:
    """What a call to :meth:`ResponsibilityStore.fold` did."""

    parameters: list[str]
    steps: int
    cells: int
    seconds: float

    @property
    def cells_per_second(self) -> float:
        return self.cells / self.seconds if self.seconds > 0 else float("inf")


def metadata_digest(meta: dict[str, Any]) -> str:
    """Digest of a store's static metadata (everything but the digest itself): any later edit is detected."""
    body = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _int(value: Any, what: str) -> int:
    """A non-negative JSON integer (not a bool, float or numeric string), else StoreCorruptError."""
    if type(value) is not int or value < 0:
        raise StoreCorruptError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def labels_digest(labels: np.ndarray | None) -> str | None:
    """A short content hash of the labels, so a store notices a changed dataset."""
    if labels is None:
        return None
    return hashlib.sha1(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


class ResponsibilityStore:
    """A responsibility store. Open with :meth:`open`, make with :meth:`create`."""

    def __init__(self, group: zarr.Group, path: str, read_only: bool) -> None:
        self._group = group
        self.path = path
        self.read_only = read_only
        self._arrays: dict[str, zarr.Array] | None = None
        attrs = group.attrs.asdict()
        if not isinstance(attrs.get(ATTR_KEY), dict) or not isinstance(attrs.get(MANIFEST_KEY), dict):
            raise StoreCorruptError(f"{path} is a Zarr group but not a responsibility store (no metadata)")
        meta = attrs[ATTR_KEY]
        if _int(meta.get("format"), f"{path}/zarr.json: format") > FORMAT_VERSION:
            raise StoreCorruptError(
                f"{path} has store format {meta['format']}, newer than this library understands "
                f"({FORMAT_VERSION}); upgrade responsibility"
            )
        if "digest" not in meta:
            raise StoreCorruptError(f"{path}/zarr.json: no metadata digest (written by a pre-release version?)")
        if meta["digest"] != metadata_digest(meta):
            raise StoreCorruptError(f"{path}/zarr.json: the store's metadata was altered (digest mismatch)")
        try:
            self.spec = RecordingSpec.from_json(meta["spec"])
            self.layout = Layout(**meta["layout"])
            self.labels_digest: str | None = meta.get("labels_digest")
            self.info: dict[str, Any] = dict(meta.get("info", {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreCorruptError(f"{path}/zarr.json: malformed responsibility metadata ({exc!r})") from exc
        self._manifest = self._check_manifest(attrs[MANIFEST_KEY])
        if self.steps:
            self._check_journal()

    # ------------------------------------------------------------------ opening and creating
    @classmethod
    def open(cls, path: str | Path, mode: str = "r", *, storage_options: dict | None = None) -> ResponsibilityStore:
        """Open an existing store; ``mode="r"`` (default) or ``"r+"`` to record into or fold it."""
        check_choice("mode", mode, OpenMode)
        path = str(path)
        if not is_url(path) and not (Path(path) / "zarr.json").exists():
            raise FileNotFoundError(f"no responsibility store at {path} (no zarr.json)")
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
        overwrite: bool = False,
        storage_options: dict | None = None,
    ) -> ResponsibilityStore:
        """Create an empty store for ``spec``. An existing store is an error unless ``overwrite``."""
        path = str(path)
        layout = layout or Layout()
        if cls.exists(path, storage_options=storage_options) and not overwrite:
            raise StoreExistsError(f"{path} already exists; pass overwrite=True to replace it")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (spec.num_examples,):
                raise ValueError(f"labels must have shape ({spec.num_examples},), got {labels.shape}")
            labels = labels.astype(np.int64)
        if overwrite and not is_url(path) and Path(path).exists():
            check_replaceable(Path(path))
            shutil.rmtree(path)
        store = open_zarr_store(path, read_only=False, storage_options=storage_options)
        if overwrite and is_url(path):
            check_replaceable_url(store, path)  # mode="w" below clears everything under the prefix
        meta = {
            "format": FORMAT_VERSION,
            "library_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "spec": spec.to_json(),
            "layout": layout.to_json(),
            "labels_digest": labels_digest(labels),
            "info": info or {},
        }
        meta["digest"] = metadata_digest(meta)
        manifest = {"generation": 0, "steps": 0, "ids": 0, "folded": {}}
        # Metadata first: a reader that opens the store while it is being made sees an empty, valid store.
        group = zarr.open_group(store=store, mode="w", attributes={ATTR_KEY: meta, MANIFEST_KEY: manifest})
        journal = group.require_group("journal")
        width = spec.journal_width
        create_array(
            journal, "rows", (0, width), "float32", (layout.chunk_steps, min(width, layout.journal_chunk_cols)), layout
        )
        create_array(journal, "ids", (0,), "int64", (1 << 16,), layout)
        create_array(journal, "steps", (0, 4), "int64", (1 << 14, 4), layout)
        if spec.example_width:
            # Narrow column chunks: a fold reads one parameter's columns over all examples, and a row holds
            # every parameter's values, so wide chunks would make each small parameter's fold read them all.
            cols = min(spec.example_width, EXAMPLE_CHUNK_COLS)
            create_array(
                journal, "examples", (0, spec.example_width), "float32", (_example_chunk_rows(cols), cols), layout
            )
        if labels is not None:
            create_array(group, "labels", labels.shape, "int64", (min(len(labels), 1 << 20),), layout)[:] = labels
        return cls(group, path, read_only=False)

    # ------------------------------------------------------------------ metadata
    def _check_manifest(self, m: dict[str, Any]) -> dict[str, Any]:
        where = f"{self.path}/zarr.json: manifest"
        steps, ids = _int(m.get("steps"), f"{where} steps"), _int(m.get("ids"), f"{where} ids")
        generation = _int(m.get("generation"), f"{where} generation")
        folded = m.get("folded")
        if not isinstance(folded, dict):
            raise StoreCorruptError(f"{where}: 'folded' is not a mapping")
        for name, entry in folded.items():
            if name not in self.spec.names or not isinstance(entry, dict):
                raise StoreCorruptError(f"{where}: fold entry {name!r} is invalid")
            if not 0 < _int(entry.get("steps"), f"{where} fold steps of {name!r}") <= steps:
                raise StoreCorruptError(f"{where}: fold of {name!r} covers {entry['steps']} steps of {steps}")
            # The path is used to read and delete arrays: accept only the shape this library writes.
            if not re.fullmatch(rf"fold/{re.escape(name)}/g[0-9]+", str(entry.get("path"))):
                raise StoreCorruptError(f"{where}: fold path {entry.get('path')!r} of {name!r} is invalid")
        return {"generation": generation, "steps": steps, "ids": ids, "folded": dict(folded)}

    def _check_journal(self) -> None:
        """The journal arrays must hold what the spec and manifest say (cheap: metadata and one step record)."""
        j = self._journal
        last_end = int(self._get(j["steps"], np.s_[self.steps - 1 : self.steps])[0, 0])
        if last_end != self.num_ids:
            raise StoreCorruptError(
                f"{self.path}/zarr.json: manifest counts {self.num_ids} ids, the journal's last step ends at {last_end}"
            )

    def _write_manifest(self, **changes: Any) -> None:
        self._require_writable()
        manifest = {**self._manifest, **changes, "generation": self._manifest["generation"] + 1}
        # One atomic write of zarr.json (LocalStore writes a temp file and renames) is the commit point.
        self._group.attrs.update({MANIFEST_KEY: manifest})
        self._manifest = manifest

    def _require_writable(self) -> None:
        if self.read_only:
            raise PermissionError(f"{self.path} is open read-only; open it with mode='r+'")

    def _after_newer_commit(self, read: Callable[[], T]) -> T:
        """Run ``read``; if it fails because a writer committed (and cleaned up) meanwhile, re-read once."""
        try:
            return read()
        except StoreCorruptError:
            generation = self.generation
            self.refresh()
            if self.generation == generation:
                raise
            return read()

    def refresh(self) -> None:
        """Re-read the manifest (e.g. to see steps committed by a training run since opening)."""
        group = zarr.open_group(store=self._group.store, mode="r" if self.read_only else "r+")
        self._group = group
        self._arrays = None
        self._manifest = self._check_manifest(group.attrs.asdict()[MANIFEST_KEY])

    @property
    def num_examples(self) -> int:
        return self.spec.num_examples

    @property
    def parameters(self) -> list[str]:
        """Tracked parameter names, as in ``model.named_parameters()``."""
        return self.spec.names

    @property
    def steps(self) -> int:
        """Optimizer steps committed to the journal."""
        return self._manifest["steps"]

    @property
    def num_ids(self) -> int:
        """Example ids committed to the journal (sum of batch sizes over steps)."""
        return self._manifest["ids"]

    @property
    def generation(self) -> int:
        return self._manifest["generation"]

    def folded_steps(self, name: str) -> int:
        """How many journal steps the stored R of ``name`` covers (0: not folded)."""
        self.spec.param(name)
        entry = self._manifest["folded"].get(name)
        return int(entry["steps"]) if entry else 0

    @property
    def labels(self) -> np.ndarray | None:
        """Per-example labels recorded with the run, or None."""
        if self.labels_digest is None:
            return None
        arr = self._array("labels", "int64", lambda s: s == (self.num_examples,))
        try:
            labels = arr[:]
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
        params = []
        for p in self.spec.params:
            params.append(
                {
                    **p.to_json(),
                    "columns": p.units,
                    "folded_steps": self.folded_steps(p.name),
                    "r_bytes": 2 * 4 * p.units * self.num_examples,
                }
            )
        return {
            "path": self.path,
            "num_examples": self.num_examples,
            "steps": self.steps,
            "ids": self.num_ids,
            "batch_share": self.spec.batch_share,
            "attribution": self.spec.attribution,
            "labels": self.labels_digest is not None,
            "layout": self.layout.to_json(),
            "generation": self.generation,
            "info": self.info,
            "parameters": params,
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

    # ------------------------------------------------------------------ journal (writer side)
    def _ensure_rows(self, arr: zarr.Array, rows: int) -> None:
        if arr.shape[0] < rows:
            # Grow geometrically so metadata rewrites stay rare.
            arr.resize((max(rows, 2 * arr.shape[0]), *arr.shape[1:]))

    def write_journal(
        self,
        start_step: int,
        rows: np.ndarray,
        ids: np.ndarray,
        ids_start: int,
        steps: np.ndarray,
        examples: np.ndarray | None = None,
    ) -> None:
        """Write journal rows for steps ``start_step ..`` (not visible until :meth:`commit`).

        ``rows`` is (n, journal_width); ``ids`` the concatenated ids of those steps, starting at flat position
        ``ids_start``; ``steps`` (n, 4): absolute ids_end, global_step, epoch, flags; ``examples``
        (len(ids), example_width): per-example values, required exactly when the store records per example.
        """
        self._require_writable()
        n = len(steps)
        if rows.shape != (n, self.spec.journal_width) or steps.shape != (n, 4):
            raise ValueError(f"journal block shapes {rows.shape}, {steps.shape} do not match the store")
        blocks = [("rows", rows, start_step), ("ids", ids, ids_start), ("steps", steps, start_step)]
        if self.spec.example_width:
            if examples is None or examples.shape != (len(ids), self.spec.example_width):
                got = None if examples is None else examples.shape
                raise ValueError(f"per-example values of shape {got}, expected ({len(ids)}, {self.spec.example_width})")
            blocks.append(("examples", examples, ids_start))
        elif examples is not None:
            raise ValueError("this store records uniform attribution: it takes no per-example values")
        journal = self._journal
        for name, block, first in blocks:
            self._ensure_rows(journal[name], first + len(block))
            journal[name][first : first + len(block)] = block

    @property
    def _journal(self) -> dict[str, zarr.Array]:
        if self._arrays is None:
            width, steps, ids = self.spec.journal_width, self.steps, self.num_ids
            self._arrays = {
                "rows": self._array(
                    "journal/rows", "float32", lambda s: len(s) == 2 and s[1] == width and s[0] >= steps
                ),
                "ids": self._array("journal/ids", "int64", lambda s: len(s) == 1 and s[0] >= ids),
                "steps": self._array("journal/steps", "int64", lambda s: len(s) == 2 and s[1] == 4 and s[0] >= steps),
            }
            if self.spec.example_width:
                e = self.spec.example_width
                self._arrays["examples"] = self._array(
                    "journal/examples", "float32", lambda s: len(s) == 2 and s[1] == e and s[0] >= ids
                )
        return self._arrays

    def commit(self, steps: int, ids: int) -> None:
        """Make journal steps ``[0, steps)`` visible to readers."""
        if steps < self.steps:
            raise ValueError("commit cannot go backwards; use rollback")
        self._write_manifest(steps=int(steps), ids=int(ids))

    def rollback(self, steps: int) -> None:
        """Forget journal steps past ``steps`` (resume from an earlier checkpoint).

        Folds covering forgotten steps are dropped: R is re-derived from the journal, never un-added.
        """
        self._require_writable()
        if steps > self.steps:
            raise StoreCorruptError(
                f"{self.path}: the checkpoint expects {steps} recorded steps but the store has only "
                f"{self.steps}; recorded data was lost, so this store cannot be resumed"
            )
        if steps == self.steps:
            return
        ids = int(self._get(self._journal["steps"], np.s_[steps - 1 : steps])[0, 0]) if steps > 0 else 0
        folded = {k: v for k, v in self._manifest["folded"].items() if int(v["steps"]) <= steps}
        self._write_manifest(steps=int(steps), ids=ids, folded=folded)

    def journal_rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Committed journal ``[start, stop)``: rows (n, journal_width), their ids, and (n, 4) step records."""
        if not 0 <= start <= stop <= self.steps:
            raise IndexError(f"journal rows [{start}, {stop}) outside committed [0, {self.steps})")
        ids, _ = self.membership(start, stop)
        return (
            self._get(self._journal["rows"], np.s_[start:stop]),
            ids,
            self._get(self._journal["steps"], np.s_[start:stop]),
        )

    def param_rows(self, name: str, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """One parameter's journal values for steps ``[start, stop)``, by kind (delta, or pos and neg)."""
        stop = self.steps if stop is None else stop
        rows = self._journal["rows"]
        return {
            kind: self._get(rows, np.s_[start:stop, cols]) for kind, cols in self.spec.journal_columns()[name].items()
        }

    def membership(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Example ids of steps ``[start, stop)`` and the number of ids of each step."""
        ids, counts, _ = self._membership(start, stop)
        return ids, counts

    def journal_examples(self, start: int, stop: int) -> np.ndarray:
        """Per-example values (per-example attribution) of the ids of committed steps ``[start, stop)``."""
        if not self.spec.example_width:
            raise ValueError(f"{self.path} records uniform attribution: it has no per-example values")
        ids, _, first = self._membership(start, stop)
        return self._get(self._journal["examples"], np.s_[first : first + len(ids)])

    def _membership(self, start: int, stop: int | None) -> tuple[np.ndarray, np.ndarray, int]:
        """ids and per-step counts of steps ``[start, stop)``, and the flat position of the first id."""
        stop = self.steps if stop is None else stop
        if stop <= start:
            first = 0 if start == 0 else int(self._get(self._journal["steps"], np.s_[start - 1 : start])[0, 0])
            return np.zeros(0, np.int64), np.zeros(0, np.int64), first
        ends = self._get(self._journal["steps"], np.s_[max(start - 1, 0) : stop])[:, 0]
        first = int(ends[0]) if start > 0 else 0
        ends = ends[1:] if start > 0 else ends
        if np.any(np.diff(np.concatenate([[first], ends])) < 0) or int(ends[-1]) > self.num_ids:
            raise StoreCorruptError(f"{self.path}/journal/steps: step id offsets are not increasing")
        ids = self._get(self._journal["ids"], np.s_[first : int(ends[-1])])
        counts = np.diff(np.concatenate([[first], ends]))
        return ids, counts, first

    def meta(self) -> np.ndarray:
        """(steps, 3) int64: global_step, epoch, flags of every committed step."""
        return self._get(self._journal["steps"], np.s_[: self.steps])[:, 1:]

    # ------------------------------------------------------------------ folding
    def _fold_group_name(self, name: str) -> str | None:
        entry = self._manifest["folded"].get(name)
        return entry["path"] if entry else None

    def _accumulate(
        self,
        p: ParamSpec,
        cols: slice | np.ndarray,
        start: int,
        stop: int,
        acc_pos: torch.Tensor,
        acc_neg: torch.Tensor,
        budget: int,
        kernel: FoldKernel = index_add_fold,
        members: _Membership | None = None,
    ) -> None:
        """Fold journal steps ``[start, stop)`` of columns ``cols`` of ``p`` into the accumulators.

        The accumulators' device is where the fold runs: journal blocks are moved there as they are read.
        """
        device = acc_pos.device
        if stop <= start:
            return
        rows_arr = self._journal["rows"]
        kinds = self.spec.journal_columns()[p.name]
        ncols = acc_pos.shape[1]
        members = members or self._members(start, stop)
        ids_all, counts_all, offsets, first = members.window(start, stop)
        per_example = self.spec.attribution == "per_example"
        mean = self.spec.batch_share == "mean"
        # Journal is read a chunk-row range at a time; the gathered source of a step group is bounded too
        # (per-example folds hold a few (ids, columns) temporaries: gradients, shares and their two parts).
        step_block = max(self.layout.chunk_steps, (budget // 4) // max(1, 4 * ncols * 2))
        step_block = max(1, step_block // self.layout.chunk_steps) * self.layout.chunk_steps
        if per_example:
            max_ids = max(1, (budget // 4) // max(1, 4 * ncols * 5))
        else:
            # The kernel gathers rows in bounded slices: a group costs only a few index bytes per id.
            max_ids = max(1, (budget // 4) // 64)
        for s0 in range(start, stop, step_block):
            s1 = min(stop, s0 + step_block)
            steps = slice(s0, s1)
            if per_example:
                delta = _tensor(self._read(rows_arr, steps, _shift(cols, kinds["delta"].start)), device)
                lo, hi = int(offsets[s0 - start]), int(offsets[s1 - start])
                values = self._example_values(p, cols, first + lo, first + hi, device)
            elif p.granularity == "weight":
                block = self._read(rows_arr, steps, _shift(cols, kinds["delta"].start))
                pos_rows, neg_rows = split_signed(_tensor(block, device))
            else:
                pos_rows = _tensor(self._read(rows_arr, steps, _shift(cols, kinds["pos"].start)), device)
                neg_rows = _tensor(self._read(rows_arr, steps, _shift(cols, kinds["neg"].start)), device)
            counts = torch.from_numpy(counts_all[s0 - start : s1 - start])
            for g0, g1 in step_groups(counts, max_ids):
                lo, hi = int(offsets[s0 - start + g0]), int(offsets[s0 - start + g1])
                ids = _tensor(ids_all[lo:hi], device)
                row_of_id = torch.repeat_interleave(torch.arange(g0, g1), counts[g0:g1]).to(device)
                if per_example:
                    base = int(offsets[s0 - start])
                    group = {kind: v[lo - base : hi - base] for kind, v in values.items()}
                    share = shares(
                        delta[g0:g1],
                        example_grads(p, group, cols),
                        row_of_id - g0,
                        counts[g0:g1].to(device),
                        self.spec.share_rule,
                    )
                    pos_part, neg_part = split_signed(share)
                    del share
                    own = torch.arange(hi - lo, device=device)
                    kernel(acc_pos, pos_part, ids, own, None)
                    kernel(acc_neg, neg_part, ids, own, None)
                    continue
                scale = (
                    (1.0 / counts[g0:g1].to(torch.float32)).repeat_interleave(counts[g0:g1]).to(device)
                    if mean
                    else None
                )
                kernel(acc_pos, pos_rows, ids, row_of_id, scale)
                kernel(acc_neg, neg_rows, ids, row_of_id, scale)

    def _example_values(
        self, p: ParamSpec, cols: slice | np.ndarray, lo: int, hi: int, device: torch.device
    ) -> dict[str, torch.Tensor]:
        """The journaled per-example values of ``p`` that columns ``cols`` need, for flat id positions [lo, hi)."""
        arr = self._journal["examples"]
        where = self.spec.example_columns()[p.name]
        return {
            kind: _tensor(self._read(arr, slice(lo, hi), _shift(sel, where[kind].start)), device)
            for kind, sel in needed_columns(p, cols).items()
        }

    def _members(self, start: int, stop: int) -> _Membership:
        ids, counts, first = self._membership(start, stop)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.num_examples):
            raise StoreCorruptError(f"{self.path}: journal holds example ids outside [0, {self.num_examples})")
        return _Membership(start, ids, counts, first)

    def fold(
        self,
        parameters: Sequence[str] | None = None,
        *,
        budget_bytes: int = DEFAULT_FOLD_BUDGET,
        kernel: FoldKernel = index_add_fold,
        device: str | torch.device = "cpu",
    ) -> FoldReport:
        """Fold the committed journal into R and rebuild the top-k index, within ``budget_bytes`` of memory.

        Incremental: only steps past each parameter's last fold are added. Each parameter's new R is written
        to a fresh generation and made visible by one manifest write, so a crash mid-fold leaves the old R.
        ``device="cuda"`` runs the scatter-adds on the GPU (the budget then bounds GPU memory); CUDA's atomic
        adds make the order of additions, and so the last bits of R, vary between runs.
        """
        self._require_writable()
        device = torch.device(device)
        names = list(parameters) if parameters is not None else self.parameters
        t_start = time.perf_counter()
        todo = [self.spec.param(name) for name in names if self.folded_steps(name) < self.steps]
        if not todo:
            return FoldReport(parameters=names, steps=self.steps, cells=0, seconds=time.perf_counter() - t_start)
        members = self._members(0, self.steps)
        n, gen, cells = self.num_examples, self.generation + 1, 0
        folded = dict(self._manifest["folded"])
        replaced = []
        for p in todo:
            # Lossy stored R is never a base for more sums: such a fold starts again from the journal.
            done = self.folded_steps(p.name) if self._exact_r else 0
            cells += int(members.counts[done:].sum()) * p.units
            old = self._fold_group_name(p.name)
            path = f"fold/{p.name}/g{gen}"
            out = self._create_fold_arrays(p, path)
            # Per column: two accumulators, the top-k key scratch and journal rows.
            per_col = n * (4 * 2 + 8) + 4 * 2 * self.layout.chunk_steps
            width = _block_width(p.units, per_col, budget_bytes, self.layout.r_chunk_units)
            for c0 in range(0, p.units, width):
                cols = slice(c0, min(p.units, c0 + width))
                if old is not None and done:
                    acc_pos = _tensor(self._read(self._fold_array(p.name, "pos"), slice(None), cols), device)
                    acc_neg = _tensor(self._read(self._fold_array(p.name, "neg"), slice(None), cols), device)
                else:
                    acc_pos = torch.zeros(n, cols.stop - c0, device=device)
                    acc_neg = torch.zeros(n, cols.stop - c0, device=device)
                self._accumulate(p, cols, done, self.steps, acc_pos, acc_neg, budget_bytes, kernel, members)
                acc_pos, acc_neg = acc_pos.cpu(), acc_neg.cpu()
                out["pos"][:, cols] = self._to_stored(p.name, acc_pos)
                out["neg"][:, cols] = self._to_stored(p.name, acc_neg)
                self._write_topk(out, cols, acc_pos, acc_neg)  # from float32 sums: rankings stay exact
            folded[p.name] = {"steps": self.steps, "path": path}
            if old is not None:
                replaced.append(old)
        # One manifest write makes the whole fold visible at once; older generations go only after it.
        self._write_manifest(folded=folded)
        for old in replaced:
            self._delete(old)
        return FoldReport(parameters=names, steps=self.steps, cells=cells, seconds=time.perf_counter() - t_start)

    @property
    def _exact_r(self) -> bool:
        return self.layout.r_dtype == "float32"

    def _to_stored(self, name: str, acc: torch.Tensor) -> np.ndarray:
        if self._exact_r:
            return acc.numpy()
        peak = float(acc.max()) if acc.numel() else 0.0
        if peak > FLOAT16_MAX:
            raise ValueError(
                f"{self.path}: R of {name!r} reaches {peak:.4g}, beyond float16's range ({FLOAT16_MAX:g}); "
                "this store needs r_dtype='float32'"
            )
        return acc.numpy().astype(np.float16)

    def _create_fold_arrays(self, p: ParamSpec, path: str) -> dict[str, zarr.Array]:
        n, lay = self.num_examples, self.layout
        chunks = (min(n, lay.r_chunk_examples), min(p.units, lay.r_chunk_units))
        # overwrite: a fold killed before its commit may have left this (unreferenced) generation behind.
        group = self._group.require_group(path)
        group.attrs.put({"steps": self.steps})
        out = {
            s: create_array(group, s, (n, p.units), lay.r_dtype, chunks, lay, overwrite=True) for s in ("pos", "neg")
        }
        k = min(lay.topk, n)
        if k:
            tchunks = (k, min(p.units, 1 << 16))
            for s in SIGNS:
                out[f"top_{s}_ids"] = create_array(
                    group, f"top_{s}_ids", (k, p.units), "int64", tchunks, lay, overwrite=True
                )
                out[f"top_{s}_values"] = create_array(
                    group, f"top_{s}_values", (k, p.units), "float32", tchunks, lay, overwrite=True
                )
        return out

    def _write_topk(self, out: dict[str, zarr.Array], cols: slice, pos: torch.Tensor, neg: torch.Tensor) -> None:
        k = min(self.layout.topk, self.num_examples)
        if not k:
            return
        # One transpose of each part serves all three signs: top-k runs along contiguous rows.
        pos_t, neg_t = pos.t().contiguous(), neg.t().contiguous()
        for s in SIGNS:
            ids, vals = topk_rows(_signed(pos_t, neg_t, s), k)
            out[f"top_{s}_ids"][:, cols] = ids.t().numpy()
            out[f"top_{s}_values"][:, cols] = vals.t().numpy()

    def _array(
        self, path: str, dtype: str | None = None, shape_ok: Callable[[tuple[int, ...]], bool] | None = None
    ) -> zarr.Array:
        """Open an array the manifest or spec says exists, and check its dtype and shape against them."""
        try:
            arr = self._group[path]
        except KeyError as exc:
            raise StoreCorruptError(f"{self.path}/{path}: array missing") from exc
        except Exception as exc:  # malformed array metadata surfaces as many zarr/JSON error types
            raise StoreCorruptError(f"{self.path}/{path}/zarr.json: unreadable array metadata ({exc!r})") from exc
        if not isinstance(arr, zarr.Array):
            raise StoreCorruptError(f"{self.path}/{path}: expected an array, found a group")
        if dtype is not None and str(arr.dtype) != dtype:
            raise StoreCorruptError(f"{self.path}/{path}: dtype {arr.dtype}, expected {dtype}")
        if shape_ok is not None and not shape_ok(tuple(arr.shape)):
            raise StoreCorruptError(f"{self.path}/{path}: shape {arr.shape} does not match the store's metadata")
        return arr

    def fold_array(self, name: str, which: str) -> zarr.Array:
        """An array of the current fold of ``name``: ``pos``/``neg`` R or ``top_<sign>_ids``/``_values``.

        Checked against the spec and manifest; for Dask and other readers that work chunk by chunk.
        """
        if name not in self._manifest["folded"]:
            raise KeyError(f"{name!r} has no fold in {self.path}; run store.fold() or `responsibility fold`")
        return self._fold_array(name, which)

    def topk_index(
        self, name: str, sign: Sign = "abs", columns: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The stored top-k index of ``name`` (ids, values: ``(depth, columns)``), or None unless it is current."""
        _check_sign(sign)
        self.spec.param(name)
        if (
            not (self.steps > 0 and self.folded_steps(name) == self.steps)
            or min(self.layout.topk, self.num_examples) == 0
        ):
            return None
        sel: Any = np.s_[:] if columns is None else (slice(None), np.asarray(columns, dtype=np.int64))
        orth = columns is not None
        ids = self._get(self._fold_array(name, f"top_{sign}_ids"), sel, orthogonal=orth)
        vals = self._get(self._fold_array(name, f"top_{sign}_values"), sel, orthogonal=orth)
        return ids, vals

    def _fold_array(self, name: str, which: str) -> zarr.Array:
        """An array of the current fold of ``name``; checks that it covers the steps the manifest says."""
        entry = self._manifest["folded"][name]
        p, n = self.spec.param(name), self.num_examples
        group = entry["path"]
        try:
            covered = self._group[group].attrs.get("steps")
        except Exception as exc:
            raise StoreCorruptError(f"{self.path}/{group}: fold group unreadable ({exc!r})") from exc
        if covered != entry["steps"]:
            raise StoreCorruptError(
                f"{self.path}/{group}: fold covers {covered} steps, the manifest says {entry['steps']}"
            )
        if which in ("pos", "neg"):
            return self._array(f"{group}/{which}", self.layout.r_dtype, lambda s: s == (n, p.units))
        k = min(self.layout.topk, n)
        dtype = "int64" if which.endswith("_ids") else "float32"
        return self._array(f"{group}/{which}", dtype, lambda s: s == (k, p.units))

    def _get(self, arr: zarr.Array, selection: Any, orthogonal: bool = False) -> np.ndarray:
        """Read and verify: checksum errors and chunks that are missing (read as fill) raise StoreCorruptError."""
        try:
            data = arr.get_orthogonal_selection(selection) if orthogonal else arr[selection]
        except Exception as exc:  # checksum, codec and I/O errors all mean a damaged chunk here
            raise StoreCorruptError(f"{self.path}/{arr.path}: unreadable chunk ({exc!r})") from exc
        if data.dtype.kind == "f":
            lost = bool(np.isnan(data).any())
        else:  # journal/steps: only its ids_end column is never negative
            lost = bool(((data[:, 0] if arr.path.endswith("journal/steps") else data) < 0).any())
        if lost:
            raise StoreCorruptError(f"{self.path}/{arr.path}: a chunk is missing (read as fill value)")
        return data

    def _read(self, arr: zarr.Array, rows: slice, cols: slice | np.ndarray) -> np.ndarray:
        if isinstance(cols, slice):
            return self._get(arr, (rows, cols))
        return self._get(arr, (rows, cols), orthogonal=True)

    def _delete(self, path: str) -> None:
        try:
            del self._group[path]
        except KeyError:
            pass

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
        _check_sign(sign)
        p = self.spec.param(name)
        cols: slice | np.ndarray
        if weights is None:
            cols, ncols = slice(0, p.units), p.units
        else:
            idx = _check_weights(weights, p)
            ncols = len(idx)
            # A consecutive run reads as a slice: plain (not orthogonal) chunk reads, no gathers in the fold.
            run = ncols > 0 and bool(np.all(np.diff(idx) == 1))
            cols = slice(int(idx[0]), int(idx[-1]) + 1) if run else idx
        need = self.num_examples * ncols * 4 * 3
        if need > max_bytes:
            raise BudgetError(
                f"{self.path}: reading R of {name!r} needs ~{need / 2**30:.1f} GiB "
                f"(> max_bytes={max_bytes / 2**30:.1f} GiB); select columns with weights=..., or raise max_bytes"
            )
        window = self._check_window(steps)
        pos, neg = self._after_newer_commit(lambda: self._read_pos_neg(p, cols, ncols, max_bytes, window))
        out = _signed(pos, neg, sign).numpy()
        return out.reshape(self.num_examples, *p.r_shape) if weights is None else out

    def _read_pos_neg(
        self,
        p: ParamSpec,
        cols: slice | np.ndarray,
        ncols: int,
        budget: int,
        window: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # A window is summed from the journal alone; otherwise the fold (if any) plus the journal after it.
        start, stop = window if window is not None else (self.folded_steps(p.name), self.steps)
        # A lossy fold is used only when current; otherwise R is summed afresh from the journal in float32.
        if window is None and start and not self._exact_r and start < stop:
            start = 0
        if window is None and start:
            read = [self._read(self._fold_array(p.name, s), slice(None), cols) for s in ("pos", "neg")]
            pos, neg = (torch.from_numpy(np.ascontiguousarray(r, dtype=np.float32)) for r in read)
        else:
            pos = torch.zeros(self.num_examples, ncols)
            neg = torch.zeros(self.num_examples, ncols)
        self._accumulate(p, cols, start, stop, pos, neg, budget)
        return pos, neg

    def most_responsible(
        self, name: str, k: int = 1, sign: Sign = "abs", *, budget_bytes: int = DEFAULT_FOLD_BUDGET
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most responsible example ids of every weight of ``name`` and their R values.

        Returns ``(ids, values)``, each of shape ``(k, *r_shape)``, best first; ties go to the smaller id. Served
        from the top-k index when it is current and deep enough, else computed from R block by block.
        """
        return self._after_newer_commit(lambda: self._most_responsible(name, k, sign, budget_bytes))

    def _most_responsible(self, name: str, k: int, sign: Sign, budget_bytes: int) -> tuple[np.ndarray, np.ndarray]:
        _check_sign(sign)
        p = self.spec.param(name)
        if not 1 <= k <= self.num_examples:
            raise ValueError(f"k must be in [1, {self.num_examples}], got {k}")
        index = self.topk_index(name, sign) if k <= min(self.layout.topk, self.num_examples) else None
        if index is not None:
            ids, vals = index[0][:k], index[1][:k]
        else:
            ids = np.empty((k, p.units), np.int64)
            vals = np.empty((k, p.units), np.float32)
            for cols, pos, neg in self.iter_parts(name, budget_bytes):
                bi, bv = topk_desc(_signed(pos, neg, sign), k)
                ids[:, cols], vals[:, cols] = bi.numpy(), bv.numpy()
        return ids.reshape(k, *p.r_shape), vals.reshape(k, *p.r_shape)

    def iter_blocks(
        self,
        name: str,
        sign: Sign = "abs",
        budget_bytes: int = DEFAULT_FOLD_BUDGET,
        steps: tuple[int, int] | None = None,
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(columns, R[:, columns])`` blocks of a parameter's flat R within a memory budget."""
        _check_sign(sign)
        for cols, pos, neg in self.iter_parts(name, budget_bytes, steps):
            yield cols, _signed(pos, neg, sign).numpy()

    def iter_parts(
        self, name: str, budget_bytes: int = DEFAULT_FOLD_BUDGET, steps: tuple[int, int] | None = None
    ) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
        """Yield ``(columns, R_pos, R_neg)`` column blocks (float32 tensors), each part read or folded once.

        ``steps=(start, stop)``: R over journal steps ``[start, stop)`` only, as in :meth:`read`.
        """
        p = self.spec.param(name)
        window = self._check_window(steps)
        # Per column: both parts, a signed copy and scratch for a consumer's top-k.
        width = _block_width(p.units, self.num_examples * (4 * 3 + 8), budget_bytes, self.layout.r_chunk_units)
        for c0 in range(0, p.units, width):
            cols = slice(c0, min(p.units, c0 + width))
            pos, neg = self._read_pos_neg(p, cols, cols.stop - cols.start, budget_bytes, window)
            yield cols, pos, neg

    def epoch_steps(self, epochs: int | Sequence[int]) -> tuple[int, int]:
        """The journal step window ``(start, stop)`` of a training epoch, or of consecutive epochs.

        Epochs are numbered as Lightning's ``current_epoch``; negative numbers count back from the last recorded
        epoch (``-1`` = the last). For :meth:`read` / :meth:`iter_parts` ``steps=...``.
        """
        wanted = [epochs] if isinstance(epochs, (int, np.integer)) else list(epochs)
        recorded = self.meta()[:, 1]
        if not len(recorded):
            raise ValueError(f"{self.path} has no committed steps")
        if not wanted:
            raise ValueError("epoch_steps needs at least one epoch")
        last = int(recorded.max())
        chosen = sorted({int(e) + last + 1 if e < 0 else int(e) for e in wanted})
        if chosen != list(range(chosen[0], chosen[-1] + 1)):
            raise ValueError(f"epochs {wanted} are not consecutive")
        inside = np.flatnonzero((recorded >= chosen[0]) & (recorded <= chosen[-1]))
        if not len(inside):
            raise ValueError(f"epochs {wanted} are not in the journal (it holds epochs {int(recorded.min())}..{last})")
        return int(inside[0]), int(inside[-1]) + 1

    def _check_window(self, steps: tuple[int, int] | None) -> tuple[int, int] | None:
        if steps is None:
            return None
        start, stop = (int(s) for s in steps)
        if not 0 <= start <= stop <= self.steps:
            raise IndexError(f"steps [{start}, {stop}) outside the committed journal [0, {self.steps})")
        return start, stop


@dataclass(frozen=True)
class _Membership:
    """Batch membership of journal steps ``start ..``: ids, ids per step, and step offsets into ids."""

    start: int
    ids: np.ndarray
    counts: np.ndarray
    first: int  # flat position (in journal/ids) of ids[0]

    def window(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """ids, per-step counts and id offsets of steps ``[start, stop)``, and the flat position of the first id."""
        offsets = np.concatenate([[0], np.cumsum(self.counts)])
        a, b = start - self.start, stop - self.start
        counts = self.counts[a:b]
        ids = self.ids[offsets[a] : offsets[b]]
        return ids, counts, np.concatenate([[0], np.cumsum(counts)]), self.first + int(offsets[a])


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if t.device == device else t.to(device, non_blocking=True)


def _example_chunk_rows(cols: int) -> int:
    # ~4 MiB chunks, like the journal rows: written by id ranges, read by id ranges and parameter columns.
    return int(max(256, (4 << 20) // (4 * cols)))


def _check_sign(sign: str) -> None:
    check_choice("sign", sign, Sign)


def _check_weights(weights: Sequence[int] | np.ndarray, p: ParamSpec) -> np.ndarray:
    idx = np.asarray(weights)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError("weights must be a 1-D sequence of flat integer indices")
    if len(idx) and (idx.min() < 0 or idx.max() >= p.units):
        raise IndexError(f"weights index outside [0, {p.units}) for {p.name!r}")
    return idx.astype(np.int64)


def _signed(pos: torch.Tensor, neg: torch.Tensor, sign: str) -> torch.Tensor:
    if sign == "pos":
        return pos
    if sign == "neg":
        return neg
    return pos + neg


def _shift(cols: slice | np.ndarray, offset: int) -> slice | np.ndarray:
    """Columns of one parameter -> columns of the journal row."""
    if isinstance(cols, slice):
        return slice(cols.start + offset, cols.stop + offset)
    return cols + offset


def _block_width(units: int, bytes_per_col: int, budget: int, align: int) -> int:
    width = max(1, budget // max(1, bytes_per_col))
    if width >= align:
        width = (width // align) * align
    return max(1, min(units, width))
