"""Checked array access: arrays opened with dtype and shape checks, reads that detect damaged or missing chunks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import zarr

from responsibility.errors import StoreCorruptError
from responsibility.store._state import StoreState
from responsibility.store.layout import BF16_NAN_BITS, BF16_STORAGE, writable


class Arrays:
    """Opens, reads and deletes the arrays of one store, turning every damage into StoreCorruptError."""

    def __init__(self, state: StoreState) -> None:
        self.state = state

    def open(
        self, path: str, dtype: str | None = None, shape_ok: Callable[[tuple[int, ...]], bool] | None = None
    ) -> zarr.Array:
        """Open an array the manifest or spec says exists, and check its dtype and shape against them."""
        where = f"{self.state.path}/{path}"
        try:
            arr = self.state.group[path]
        except KeyError as exc:
            raise StoreCorruptError(f"{where}: array missing") from exc
        except Exception as exc:  # malformed array metadata surfaces as many zarr/JSON error types
            raise StoreCorruptError(f"{where}/zarr.json: unreadable array metadata ({exc!r})") from exc
        if not isinstance(arr, zarr.Array):
            raise StoreCorruptError(f"{where}: expected an array, found a group")
        if dtype is not None and str(arr.dtype) != dtype:
            raise StoreCorruptError(f"{where}: dtype {arr.dtype}, expected {dtype}")
        if shape_ok is not None and not shape_ok(tuple(arr.shape)):
            raise StoreCorruptError(f"{where}: shape {arr.shape} does not match the store's metadata")
        return writable(arr)

    def get(
        self,
        arr: zarr.Array,
        selection: Any,
        orthogonal: bool = False,
        unwritten: Callable[[], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Read and verify: checksum errors and chunks that are missing (read as fill) raise StoreCorruptError.

        ``unwritten``: the cells (a boolean mask of the data's shape, formed only when a fill value is read) that
        may hold the fill value because nothing was written there (a derived step's Δw)."""
        try:
            data = np.asarray(arr.get_orthogonal_selection(selection) if orthogonal else arr[selection])
        except Exception as exc:  # checksum, codec and I/O errors all mean a damaged chunk here
            raise StoreCorruptError(f"{self.state.path}/{arr.path}: unreadable chunk ({exc!r})") from exc
        if data.dtype.kind == "f":
            fill = np.isnan(data)
        elif str(data.dtype) == BF16_STORAGE:  # bfloat16 bits: the fill is a NaN pattern no journal value has
            fill = data == BF16_NAN_BITS
        else:  # journal/steps: only its ids_end column is never negative
            fill = (data[:, 0] if arr.path.endswith("journal/steps") else data) < 0
        lost = bool(fill.any())
        if lost and unwritten is not None:
            lost = bool((fill & ~unwritten()).any())
        if lost:
            raise StoreCorruptError(f"{self.state.path}/{arr.path}: a chunk is missing (read as fill value)")
        return data

    def read(
        self,
        arr: zarr.Array,
        rows: slice,
        cols: slice | np.ndarray,
        unwritten: Callable[[], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Rows by a slice, columns by a slice (plain read) or by sorted indices (orthogonal read); ``unwritten``:
        see :meth:`get`."""
        return self.get(arr, (rows, cols), orthogonal=not isinstance(cols, slice), unwritten=unwritten)

    def delete(self, path: str) -> None:
        try:
            del self.state.group[path]
        except KeyError:
            pass

    def fold(self, name: str, which: str) -> zarr.Array:
        """An array of the current fold of ``name``; checks that it covers the steps the manifest says."""
        state = self.state
        entry = state.manifest["folded"][name]
        p, n = state.spec.param(name), state.num_examples
        group = entry["path"]
        try:
            covered = state.group[group].attrs.get("steps")
        except Exception as exc:
            raise StoreCorruptError(f"{state.path}/{group}: fold group unreadable ({exc!r})") from exc
        if covered != entry["steps"]:
            raise StoreCorruptError(
                f"{state.path}/{group}: fold covers {covered} steps, the manifest says {entry['steps']}"
            )
        if which in ("pos", "neg"):
            return self.open(f"{group}/{which}", state.layout.r_dtype, lambda s: s == (n, p.units))
        k = min(state.layout.topk, n)
        dtype = "int64" if which.endswith("_ids") else "float32"
        return self.open(f"{group}/{which}", dtype, lambda s: s == (k, p.units))
