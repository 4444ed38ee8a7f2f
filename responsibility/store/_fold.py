"""The fold: the journal summed into stored R (one generation per parameter) and its top-k index.

Arrays of a fold generation::

    fold/<p>/g<G>/pos, neg                            (N, units) folded R_pos, R_neg (layout.r_dtype)
    fold/<p>/g<G>/top_<sign>_ids, top_<sign>_values   (k, units) per-column top-k, sign in abs/pos/neg
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import zarr

from responsibility.choices import SIGNS
from responsibility.kernels import FoldKernel, index_add_fold, topk_rows
from responsibility.store._accumulate import accumulate, block_width, signed, tensor
from responsibility.store._journal import Journal
from responsibility.store.layout import FLOAT16_MAX, create_array
from responsibility.store.spec import ParamSpec

DEFAULT_FOLD_BUDGET = 1 << 30


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


def fold(
    journal: Journal,
    parameters: Sequence[str] | None,
    budget_bytes: int,
    kernel: FoldKernel = index_add_fold,
    device: torch.device | None = None,
) -> FoldReport:
    """Fold the committed journal into R and rebuild the top-k index (see :meth:`ResponsibilityStore.fold`)."""
    state, arrays = journal.state, journal.arrays
    state.require_writable()
    device = device or torch.device("cpu")
    names = list(parameters) if parameters is not None else state.spec.names
    t_start = time.perf_counter()
    todo = [state.spec.param(name) for name in names if state.folded_steps(name) < state.steps]
    if not todo:
        return FoldReport(parameters=names, steps=state.steps, cells=0, seconds=time.perf_counter() - t_start)
    members = journal.members(0, state.steps)
    n, gen, cells = state.num_examples, state.generation + 1, 0
    folded = dict(state.manifest["folded"])
    replaced = []
    for p in todo:
        # Lossy stored R is never a base for more sums: such a fold starts again from the journal.
        done = state.folded_steps(p.name) if state.exact_r else 0
        cells += int(members.counts[done:].sum()) * p.units
        old = state.fold_path(p.name)
        path = f"fold/{p.name}/g{gen}"
        out = _create_fold_arrays(journal, p, path)
        # Per column: two accumulators, the top-k key scratch and journal rows.
        per_col = n * (4 * 2 + 8) + 4 * 2 * state.layout.chunk_steps
        width = block_width(p.units, per_col, budget_bytes, state.layout.r_chunk_units)
        for c0 in range(0, p.units, width):
            cols = slice(c0, min(p.units, c0 + width))
            if old is not None and done:
                acc_pos = tensor(arrays.read(arrays.fold(p.name, "pos"), slice(None), cols), device)
                acc_neg = tensor(arrays.read(arrays.fold(p.name, "neg"), slice(None), cols), device)
            else:
                acc_pos = torch.zeros(n, cols.stop - c0, device=device)
                acc_neg = torch.zeros(n, cols.stop - c0, device=device)
            accumulate(journal, p, cols, done, state.steps, acc_pos, acc_neg, budget_bytes, kernel, members)
            acc_pos, acc_neg = acc_pos.cpu(), acc_neg.cpu()
            out["pos"][:, cols] = _to_stored(journal, p.name, acc_pos)
            out["neg"][:, cols] = _to_stored(journal, p.name, acc_neg)
            _write_topk(out, cols, acc_pos, acc_neg, min(state.layout.topk, n))  # float32 sums: exact rankings
        folded[p.name] = {"steps": state.steps, "path": path}
        if old is not None:
            replaced.append(old)
    # One manifest write makes the whole fold visible at once; older generations go only after it.
    state.write_manifest(folded=folded)
    for old in replaced:
        arrays.delete(old)
    return FoldReport(parameters=names, steps=state.steps, cells=cells, seconds=time.perf_counter() - t_start)


def _to_stored(journal: Journal, name: str, acc: torch.Tensor) -> np.ndarray:
    if journal.state.exact_r:
        return acc.numpy()
    peak = float(acc.max()) if acc.numel() else 0.0
    if peak > FLOAT16_MAX:
        raise ValueError(
            f"{journal.state.path}: R of {name!r} reaches {peak:.4g}, beyond float16's range ({FLOAT16_MAX:g}); "
            "this store needs r_dtype='float32'"
        )
    return acc.numpy().astype(np.float16)


def _create_fold_arrays(journal: Journal, p: ParamSpec, path: str) -> dict[str, zarr.Array]:
    state = journal.state
    n, lay = state.num_examples, state.layout
    chunks = (min(n, lay.r_chunk_examples), min(p.units, lay.r_chunk_units))
    # overwrite: a fold killed before its commit may have left this (unreferenced) generation behind.
    group = state.group.require_group(path)
    group.attrs.put({"steps": state.steps})
    out = {s: create_array(group, s, (n, p.units), lay.r_dtype, chunks, lay, overwrite=True) for s in ("pos", "neg")}
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


def _write_topk(out: dict[str, zarr.Array], cols: slice, pos: torch.Tensor, neg: torch.Tensor, k: int) -> None:
    if not k:
        return
    # One transpose of each part serves all three signs: top-k runs along contiguous rows.
    pos_t, neg_t = pos.t().contiguous(), neg.t().contiguous()
    for s in SIGNS:
        ids, vals = topk_rows(signed(pos_t, neg_t, s), k)
        out[f"top_{s}_ids"][:, cols] = ids.t().numpy()
        out[f"top_{s}_values"][:, cols] = vals.t().numpy()
