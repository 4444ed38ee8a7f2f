"""The journal: writing blocks of steps, commit and rollback, and reading rows, membership and per-example values.

Arrays, with their dimension names (all grown geometrically: rows past the manifest's counts are capacity, never
read by the library; another reader should cut them at the manifest's ``steps`` and ``ids``)::

    journal/rows      (step, column)          one row per optimizer step: RecordingSpec.journal_columns side by
                                              side (float32)
    journal/ids       (visit,)                example ids of every step, concatenated (int64)
    journal/steps     (step, field)           ids_end, global_step, epoch, flags (int64; flag 1 = non-finite Δw,
                                              row zeroed)
    journal/examples  (visit, example_column) per-example attribution only: each id's journaled values (float32)
    journal/scales    (step, parameter)       ``journal_delta="derived"`` only: per parameter and step, the scale c
                                              with Δw = c · Σ_j g_j (float32), or inf where Δw is in journal/rows

In a derived store a derived step's cells of journal/rows are not read: chunks of only such cells are not written,
and :meth:`Journal.rows` returns NaN for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import zarr

from responsibility.errors import StoreCorruptError
from responsibility.store._arrays import Arrays
from responsibility.store._state import StoreState
from responsibility.store.layout import BF16_STORAGE, ArraySpec, Layout
from responsibility.store.spec import RecordingSpec

EXAMPLE_CHUNK_COLS = 1024


@dataclass(frozen=True)
class Membership:
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


def journal_arrays(spec: RecordingSpec, layout: Layout) -> tuple[dict[str, ArraySpec], set[str], dict[str, dict]]:
    """The empty journal arrays of a new store, for :func:`~responsibility.store.layout.create_arrays` (names under
    ``journal/``): their specs, those stored unshuffled, and their attributes."""
    width = spec.journal_width
    arrays: dict[str, ArraySpec] = {
        "journal/rows": (
            (0, width),
            rows_dtype(layout),
            (layout.chunk_steps, min(width, layout.journal_chunk_cols)),
            ("step", "column"),
        ),
        "journal/ids": ((0,), "int64", (1 << 16,), ("visit",)),
        "journal/steps": ((0, 4), "int64", (1 << 14, 4), ("step", "field")),
    }
    if layout.journal_delta == "derived":
        n = len(spec.params)
        arrays["journal/scales"] = ((0, n), "float32", (1 << 14, n), ("step", "parameter"))
    unshuffled = {"journal/rows"}
    if spec.example_width:
        # Narrow column chunks: a fold reads one parameter's columns over all examples, and a row holds
        # every parameter's values, so wide chunks would make each small parameter's fold read them all.
        cols = min(spec.example_width, EXAMPLE_CHUNK_COLS)
        # ~4 MiB chunks, like the journal rows: written by id ranges, read by id ranges and parameter columns.
        visits = int(max(256, (4 << 20) // (4 * cols)))
        arrays["journal/examples"] = ((0, spec.example_width), "float32", (visits, cols), ("visit", "example_column"))
        unshuffled.add("journal/examples")
    return arrays, unshuffled, {"journal/rows": {"encoding": layout.journal_dtype}}


def rows_dtype(layout: Layout) -> str:
    """The stored dtype of journal rows: float32, or the bits of bfloat16."""
    return BF16_STORAGE if layout.journal_dtype == "bfloat16" else "float32"


def encode_rows(rows: np.ndarray, layout: Layout) -> np.ndarray:
    """float32 rows as stored: unchanged, or rounded to bfloat16 (to nearest even) and kept as its bits."""
    if layout.journal_dtype == "float32":
        return rows
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(torch.bfloat16).view(torch.uint16).numpy()


def decode_rows(stored: np.ndarray) -> np.ndarray:
    """Stored rows as float32 (bfloat16 bits widen exactly: they are a float32's upper half)."""
    if stored.dtype == np.float32:
        return stored
    return (stored.astype(np.uint32) << 16).view(np.float32)


class Journal:
    """Reads and writes one store's journal; nothing written is visible to readers before :meth:`commit`."""

    def __init__(self, state: StoreState, arrays: Arrays) -> None:
        self.state = state
        self.arrays = arrays

    @property
    def derived(self) -> bool:
        """Whether steps may journal a scale instead of Δw (``journal_delta="derived"``)."""
        return self.state.layout.journal_delta == "derived"

    @property
    def zarr_arrays(self) -> dict[str, zarr.Array]:
        """The journal arrays, opened and checked once per reload."""
        cached = self.state.cache.get("journal")
        if cached is None:
            spec, steps, ids = self.state.spec, self.state.steps, self.state.num_ids
            width, open_, stored = spec.journal_width, self.arrays.open, rows_dtype(self.state.layout)
            cached = {
                "rows": open_("journal/rows", stored, lambda s: len(s) == 2 and s[1] == width and s[0] >= steps),
                "ids": open_("journal/ids", "int64", lambda s: len(s) == 1 and s[0] >= ids),
                "steps": open_("journal/steps", "int64", lambda s: len(s) == 2 and s[1] == 4 and s[0] >= steps),
            }
            if spec.example_width:
                e = spec.example_width
                cached["examples"] = open_(
                    "journal/examples", "float32", lambda s: len(s) == 2 and s[1] == e and s[0] >= ids
                )
            if self.derived:
                n = len(spec.params)
                cached["scales"] = open_(
                    "journal/scales", "float32", lambda s: len(s) == 2 and s[1] == n and s[0] >= steps
                )
            self.state.cache["journal"] = cached
        return cached

    def check(self) -> None:
        """The journal arrays must hold what the spec and manifest say (cheap: metadata and one step record)."""
        state = self.state
        if not state.steps:
            return
        last_end = int(self.arrays.get(self.zarr_arrays["steps"], np.s_[state.steps - 1 : state.steps])[0, 0])
        if last_end != state.num_ids:
            raise StoreCorruptError(
                f"{state.path}/zarr.json: manifest counts {state.num_ids} ids, the journal's last step ends at "
                f"{last_end}"
            )

    # ------------------------------------------------------------------ writing
    def write(
        self,
        start_step: int,
        rows: np.ndarray,
        ids: np.ndarray,
        ids_start: int,
        steps: np.ndarray,
        examples: np.ndarray | None = None,
        scales: np.ndarray | None = None,
    ) -> None:
        self.state.require_writable()
        spec = self.state.spec
        n = len(steps)
        if rows.shape != (n, spec.journal_width) or steps.shape != (n, 4):
            raise ValueError(f"journal block shapes {rows.shape}, {steps.shape} do not match the store")
        stored = encode_rows(rows, self.state.layout)
        blocks: list[tuple[str, np.ndarray, int]] = [("ids", ids, ids_start), ("steps", steps, start_step)]
        if self.derived:
            if scales is None or scales.shape != (n, len(spec.params)) or bool(np.isnan(scales).any()):
                got = None if scales is None else scales.shape
                raise ValueError(
                    f"a derived journal needs (steps, parameters) = ({n}, {len(spec.params)}) scales, not "
                    f"NaN; got {got}"
                )
            blocks.append(("scales", scales.astype(np.float32, copy=False), start_step))
        elif scales is not None:
            raise ValueError("this store journals every Δw: it takes no scales")
        if spec.example_width:
            if examples is None or examples.shape != (len(ids), spec.example_width):
                got = None if examples is None else examples.shape
                raise ValueError(f"per-example values of shape {got}, expected ({len(ids)}, {spec.example_width})")
            blocks.append(("examples", examples, ids_start))
        elif examples is not None:
            raise ValueError("this store records uniform attribution: it takes no per-example values")
        journal = self.zarr_arrays
        for name, block, first in [("rows", stored, start_step), *blocks]:
            arr = journal[name]
            if arr.shape[0] < first + len(block):
                # Grow geometrically so metadata rewrites stay rare.
                arr.resize((max(first + len(block), 2 * arr.shape[0]), *arr.shape[1:]))
            if name == "rows" and scales is not None:
                for c0, c1 in self._written_columns(scales):
                    arr[first : first + len(block), c0:c1] = block[:, c0:c1]
            else:
                arr[first : first + len(block)] = block

    def _written_columns(self, scales: np.ndarray) -> list[tuple[int, int]]:
        """The column runs of journal/rows a derived block writes: every chunk column but those whose parameters
        are derived at each of the block's steps (their Δw is never read)."""
        width = self.state.spec.journal_width
        chunk = int(self.zarr_arrays["rows"].chunks[1])
        stored = ~np.isfinite(scales).all(0)[self._column_owner()]  # per column: some step journals its Δw
        keep = np.add.reduceat(stored, np.arange(0, width, chunk)) > 0 if width else np.zeros(0, bool)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
        return [(int(a) * chunk, min(int(b) * chunk, width)) for a, b in zip(edges[::2], edges[1::2], strict=True)]

    def commit(self, steps: int, ids: int) -> None:
        if steps < self.state.steps:
            raise ValueError("commit cannot go backwards; use rollback")
        self.state.write_manifest(steps=int(steps), ids=int(ids))

    def rollback(self, steps: int) -> None:
        state = self.state
        state.require_writable()
        if steps > state.steps:
            raise StoreCorruptError(
                f"{state.path}: the checkpoint expects {steps} recorded steps but the store has only "
                f"{state.steps}; recorded data was lost, so this store cannot be resumed"
            )
        if steps == state.steps:
            return
        ids = int(self.arrays.get(self.zarr_arrays["steps"], np.s_[steps - 1 : steps])[0, 0]) if steps > 0 else 0
        folded = {k: v for k, v in state.manifest["folded"].items() if int(v["steps"]) <= steps}
        dropped = sorted(state.manifest["folded"].keys() - folded.keys())
        state.write_manifest(steps=int(steps), ids=ids, folded=folded)
        for name in dropped:
            # The dropped generation is left for the next fold to remove; nothing points at it any more.
            state.group[f"fold/{name}"].attrs.update({"current": None, "steps": 0})

    # ------------------------------------------------------------------ reading
    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 <= start <= stop <= self.state.steps:
            raise IndexError(f"journal rows [{start}, {stop}) outside committed [0, {self.state.steps})")
        ids, _, _ = self.membership(start, stop)
        steps = self.arrays.get(self.zarr_arrays["steps"], np.s_[start:stop])
        return self._journaled(start, stop, slice(None)), ids, steps

    def scales(self, start: int, stop: int) -> np.ndarray | None:
        """A derived store's scales of steps ``[start, stop)``, (steps, parameters): c, or inf where Δw is
        journaled; None for a store that journals every Δw."""
        return self._stored_scales(start, stop) if self.derived else None

    def _stored_scales(self, start: int, stop: int) -> np.ndarray:
        return self.arrays.get(self.zarr_arrays["scales"], np.s_[start:stop])

    def _derived_cells(self, scales: np.ndarray, cols: slice | np.ndarray) -> np.ndarray:
        """Which cells of rows (of ``scales``' steps), columns ``cols``, belong to a derived step."""
        return np.isfinite(scales)[:, self._column_owner()[cols]]

    def _column_owner(self) -> np.ndarray:
        """The position in the spec of the parameter each column of journal/rows belongs to."""
        owner = self.state.cache.get("column_owner")
        if owner is None:
            owner = np.empty(self.state.spec.journal_width, dtype=np.int64)
            for k, kinds in enumerate(self.state.spec.journal_columns().values()):
                for sl in kinds.values():
                    owner[sl] = k
            self.state.cache["column_owner"] = owner
        return owner

    def param_rows(self, name: str, start: int, stop: int) -> dict[str, np.ndarray]:
        columns = self.state.spec.journal_columns()[name]
        return {kind: self._journaled(start, stop, cols) for kind, cols in columns.items()}

    def _journaled(self, start: int, stop: int, cols: slice) -> np.ndarray:
        """Rows ``[start, stop)``, columns ``cols``, with NaN where a derived step journaled its scale instead."""
        if not self.derived:
            return self.row_block(slice(start, stop), cols)
        scales = self._stored_scales(start, stop)
        rows = self.row_block(slice(start, stop), cols, scales)
        rows[self._derived_cells(scales, cols)] = np.nan
        return rows

    def row_block(self, steps: slice, cols: slice | np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
        """Journal rows ``steps`` (a slice), columns ``cols`` (of the whole row), as float32; a derived step's
        cells hold its Δw or NaN (see :meth:`scales`). ``scales``: a derived store's scales of these steps, when the
        caller has read them already (else they are read if a derived cell is met)."""
        unwritten = None
        if self.derived:
            start, stop = steps.start or 0, self.state.steps if steps.stop is None else steps.stop

            def unwritten() -> np.ndarray:
                return self._derived_cells(self._stored_scales(start, stop) if scales is None else scales, cols)

        return decode_rows(self.arrays.read(self.zarr_arrays["rows"], steps, cols, unwritten))

    def examples(self, start: int, stop: int) -> np.ndarray:
        if not self.state.spec.example_width:
            raise ValueError(f"{self.state.path} records uniform attribution: it has no per-example values")
        ids, _, first = self.membership(start, stop)
        return self.arrays.get(self.zarr_arrays["examples"], np.s_[first : first + len(ids)])

    def example_block(self, lo: int, hi: int, cols: slice | np.ndarray) -> np.ndarray:
        """Per-example values of flat id positions ``[lo, hi)``, columns ``cols`` (of the whole example row)."""
        return self.arrays.read(self.zarr_arrays["examples"], slice(lo, hi), cols)

    def membership(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, int]:
        """ids and per-step counts of steps ``[start, stop)``, and the flat position of the first id."""
        get = self.arrays.get
        if stop <= start:
            # No array is opened for an empty range: a store being created has none yet.
            first = 0 if start == 0 else int(get(self.zarr_arrays["steps"], np.s_[start - 1 : start])[0, 0])
            return np.zeros(0, np.int64), np.zeros(0, np.int64), first
        steps_arr = self.zarr_arrays["steps"]
        ends = get(steps_arr, np.s_[max(start - 1, 0) : stop])[:, 0]
        first = int(ends[0]) if start > 0 else 0
        ends = ends[1:] if start > 0 else ends
        if np.any(np.diff(np.concatenate([[first], ends])) < 0) or int(ends[-1]) > self.state.num_ids:
            raise StoreCorruptError(f"{self.state.path}/journal/steps: step id offsets are not increasing")
        ids = get(self.zarr_arrays["ids"], np.s_[first : int(ends[-1])])
        counts = np.diff(np.concatenate([[first], ends]))
        return ids, counts, first

    def members(self, start: int, stop: int) -> Membership:
        """:meth:`membership` with every id checked to be an example of the store."""
        ids, counts, first = self.membership(start, stop)
        n = self.state.num_examples
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise StoreCorruptError(f"{self.state.path}: journal holds example ids outside [0, {n})")
        return Membership(start, ids, counts, first)

    def meta(self) -> np.ndarray:
        return self.arrays.get(self.zarr_arrays["steps"], np.s_[: self.state.steps])[:, 1:]
