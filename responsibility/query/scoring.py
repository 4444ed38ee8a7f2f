"""The paper's rule (``method="most_activated"``): scores of the chosen entries, and their top-k.

With chosen entries ``j`` of activations ``a_j``, ``score(m) = Σ_j (a_j / Σ_l a_l) · R_j[m]``, an
activation-weighted mean of R (``sign`` picks R, R_pos, R_neg or R_pos - R_neg). With one entry the score is R
itself, and its top-k comes from the top-k index when the store has a current one. The ``k`` examples of largest
score are returned, ties to the smaller example id.
"""

from __future__ import annotations

import numpy as np
import torch

from responsibility.choices import QuerySign, Sign
from responsibility.kernels import topk_rows
from responsibility.query.choice import Chosen
from responsibility.store import ResponsibilityStore

__all__ = ["Scorer", "read_signed"]

# Load a parameter's whole top-k index into memory (for repeated queries) up to this size.
_INDEX_CACHE_BYTES = 256 << 20


def read_signed(store: ResponsibilityStore, name: str, sign: QuerySign, columns: np.ndarray) -> np.ndarray:
    """R of some columns of ``name`` as ``(N, len(columns))`` float32; ``"net"`` is R_pos - R_neg."""
    if sign == "net":
        return store.read(name, "pos", weights=columns) - store.read(name, "neg", weights=columns)
    return store.read(name, sign, weights=columns)


class Scorer:
    """Ranks training examples for chosen entries of one store, keeping small top-k indexes in memory."""

    def __init__(self, store: ResponsibilityStore) -> None:
        self.store = store
        self._index: dict[tuple[str, str], tuple[int, tuple[np.ndarray, np.ndarray] | None]] = {}

    def lookup_top(self, name: str, columns: np.ndarray, k: int, sign: Sign) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most responsible example ids and R of some columns, ``(k, len(columns))`` each.

        The store decides whether its top-k index is current (:meth:`ResponsibilityStore.topk_index`); a small
        current index is kept in memory for repeated queries, anything else is the store's
        :meth:`~ResponsibilityStore.most_responsible` of just these columns.
        """
        store = self.store
        if store.param(name).units * store.layout.topk * 12 <= _INDEX_CACHE_BYTES:
            cached = self._index.get((name, sign))
            if cached is None or cached[0] != store.generation:
                cached = self._index[(name, sign)] = (store.generation, store.topk_index(name, sign))
            index = cached[1]
            if index is not None and k <= len(index[0]):
                return index[0][:k, columns], index[1][:k, columns]
        return store.most_responsible(name, k, sign, weights=columns)

    def top(self, chosen: list[Chosen], k: int, sign: QuerySign) -> tuple[np.ndarray, np.ndarray]:
        """Top-k example ids and scores ``(B, k)`` per input: the top-k index for single entries (the index has no
        net sign), weighted R sums otherwise."""
        b = len(chosen)
        ids = np.zeros((b, k), np.int64)
        scores = np.zeros((b, k), np.float32)
        by_name: dict[str, list[int]] = {}
        if sign != "net":
            for i in range(b):
                if len(chosen[i]) == 1:
                    by_name.setdefault(chosen[i][0][0], []).append(i)
            for name, inputs in by_name.items():
                cols = np.array([chosen[i][0][1] for i in inputs], dtype=np.int64)
                uniq, inverse = np.unique(cols, return_inverse=True)
                top_ids, top_vals = self.lookup_top(name, uniq, k, sign)
                ids[inputs] = top_ids[:, inverse].T
                scores[inputs] = top_vals[:, inverse].T
        looked_up = {i for inputs in by_name.values() for i in inputs}
        rest = [i for i in range(b) if i not in looked_up]
        if rest:
            top_i, top_v = topk_rows(self.dense([chosen[i] for i in rest], sign), k)
            ids[rest], scores[rest] = top_i.numpy(), top_v.numpy()
        return ids, scores

    def dense(self, chosen: list[Chosen], sign: QuerySign) -> torch.Tensor:
        """Every example's score for every input, ``(B, N)`` float32."""
        n = self.store.num_examples
        # Each distinct (parameter, column) is read once for the whole batch.
        keys = sorted({(name, c) for entries in chosen for name, c, _ in entries})
        pos = {key: j for j, key in enumerate(keys)}
        r = torch.empty((n, len(keys)), dtype=torch.float32)
        for name in sorted({name for name, _ in keys}):
            js = [j for j, (other, _) in enumerate(keys) if other == name]
            cols = np.array([keys[j][1] for j in js], dtype=np.int64)
            r[:, js] = torch.from_numpy(read_signed(self.store, name, sign, cols))
        width = max(len(entries) for entries in chosen)
        idx = torch.zeros((len(chosen), width), dtype=torch.int64)
        coef = torch.zeros((len(chosen), width), dtype=torch.float32)
        for row, entries in enumerate(chosen):
            total = sum(a for _, _, a in entries)
            for t, (name, c, a) in enumerate(entries):
                idx[row, t] = pos[(name, c)]
                coef[row, t] = a / total if total > 0 else 1.0 / len(entries)
        # Term by term in activation order, so an input's score does not depend on the rest of the batch.
        s = torch.zeros((n, len(chosen)), dtype=torch.float32)
        for t in range(width):
            s += r[:, idx[:, t]] * coef[:, t]
        return s.T.contiguous()
