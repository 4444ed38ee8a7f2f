"""R summed while recording: each journal block is added to in-memory R as the recorder writes it.

The fold at the end of a run then only writes R and ranks its top-k index, instead of reading the journal back
and summing it. The blocks go through the one accumulation path (:func:`accumulate`) exactly as stored (after the
recorder's non-finite policy, bfloat16 rows rounded), and accumulation is chronological, so the sums equal what
:meth:`ResponsibilityStore.fold` computes from the journal, bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

from responsibility.store._accumulate import accumulate
from responsibility.store._journal import Membership, decode_rows, encode_rows
from responsibility.store._state import StoreState

# Bounds the temporaries of one block's accumulation (a block is one journal chunk row: a few dozen steps).
BLOCK_BUDGET = 64 << 20


class RunningSums:
    """R_pos and R_neg of every parameter of a store, over the journal steps added so far, starting at ``start``.

    Holds R in memory (8 bytes per example and unit). :meth:`add` takes journal blocks in step order, as
    :meth:`ResponsibilityStore.write_journal` does; a fold uses the sums of a parameter only when they cover exactly
    the steps it would add.
    """

    def __init__(self, state: StoreState) -> None:
        self._state = state
        self.start = self.stop = state.steps
        n = state.num_examples
        # torch.zeros, not _memory.zeros: from huge pages, the defaults' fits were no faster (2.23x against 2.24x
        # with huge pages first in each repeat, 2.28-2.30x against 2.20x with them second; docs/benchmarks.md).
        self.sums = {p.name: (torch.zeros(n, p.units), torch.zeros(n, p.units)) for p in state.spec.params}

    def add(
        self,
        start_step: int,
        rows: np.ndarray,
        ids: np.ndarray,
        ids_start: int,
        steps: np.ndarray,
        examples: np.ndarray | None = None,
        scales: np.ndarray | None = None,
    ) -> None:
        """Add journal steps ``[start_step, start_step + len(steps))``: the arguments of a journal write. Steps
        added before are skipped (a flushed chunk row is written again, whole, when it fills up)."""
        skip = self.stop - start_step
        if not 0 <= skip <= len(steps):
            raise ValueError(f"running sums cover steps [{self.start}, {self.stop}); got a block at {start_step}")
        if skip:
            first = int(steps[skip - 1, 0])  # flat position of the first id not added yet
            rows, steps, start_step = rows[skip:], steps[skip:], start_step + skip
            scales = None if scales is None else scales[skip:]
            ids = ids[first - ids_start :]
            examples = None if examples is None else examples[first - ids_start :]
            ids_start = first
        if not len(steps):
            return
        block = _Block(self._state, start_step, rows, ids, ids_start, steps, examples, scales)
        stop = start_step + len(steps)
        for p in self._state.spec.params:
            pos, neg = self.sums[p.name]
            accumulate(block, p, slice(0, p.units), start_step, stop, pos, neg, BLOCK_BUDGET, members=block.membership)
        self.stop = stop

    def take(self, name: str, steps: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """R of ``name`` if the sums cover exactly journal steps ``[0, steps)`` (then forgotten here), else None."""
        if (self.start, self.stop) != (0, steps) or name not in self.sums:
            return None
        return self.sums.pop(name)


class _Block:
    """One journal block still in memory, read the way :func:`accumulate` reads the stored journal."""

    def __init__(
        self,
        state: StoreState,
        start: int,
        rows: np.ndarray,
        ids: np.ndarray,
        ids_start: int,
        steps: np.ndarray,
        examples: np.ndarray | None,
        scales: np.ndarray | None,
    ) -> None:
        self.state = state
        self.start = start
        self._scales = scales
        self.rows = decode_rows(encode_rows(rows, state.layout))  # as a fold reads them back
        self.examples = examples
        self.ids_start = ids_start
        counts = np.diff(np.concatenate([[ids_start], steps[:, 0]]))
        self.membership = Membership(start, ids, counts, ids_start)

    def row_block(self, steps: slice, cols: slice | np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
        return self.rows[steps.start - self.start : steps.stop - self.start, cols]

    def scales(self, start: int, stop: int) -> np.ndarray | None:
        if self._scales is None:
            return None
        return self._scales[start - self.start : stop - self.start]

    def members(self, start: int, stop: int) -> Membership:
        if start < self.start or stop > self.start + len(self.rows):
            raise IndexError(f"steps [{start}, {stop}) outside this block")
        return self.membership

    def example_block(self, lo: int, hi: int, cols: slice | np.ndarray) -> np.ndarray:
        if self.examples is None:
            raise ValueError("this block has no per-example values")
        return self.examples[lo - self.ids_start : hi - self.ids_start, cols]
