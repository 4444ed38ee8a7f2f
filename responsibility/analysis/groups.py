"""Group views of responsibility: how much of a weight's R comes from each class (or any grouping of examples).

- :func:`group_responsibility`: ``G[g] = Σ_{m in group g} R[m]`` per weight/unit, read block by block.
- :func:`class_share`: ``G[g] / Σ_g G[g]``, at the level of a weight, an output unit (dim 0) or the whole layer.
- :func:`interclass_matrix`: for the output layer, rows = training classes r, columns = output units c, entry
  ``Σ_{m in class r} Σ_{weights w feeding c} R_w[m]`` (the paper's Figure 3); ``normalize=True`` divides each
  column by its sum, so a column is the class make-up of a unit's responsibility.
- :func:`diagonal_dominance`: mean of the diagonal / mean of the off-diagonal entries of a square matrix; above 1
  when units are mostly shaped by examples of their own class.
"""

from __future__ import annotations

import numpy as np
import torch

from responsibility.choices import ShareLevel, Sign, check_choice
from responsibility.store import DEFAULT_FOLD_BUDGET, ResponsibilityStore

__all__ = ["class_share", "diagonal_dominance", "group_responsibility", "interclass_matrix", "resolve_groups"]


def resolve_groups(
    store: ResponsibilityStore, groups: np.ndarray | None, num_groups: int | None
) -> tuple[np.ndarray, int]:
    if groups is None:
        groups = store.labels
        if groups is None:
            raise ValueError(f"store {store.path} has no labels; pass groups=... (one group id per example)")
    groups = np.asarray(groups)
    if groups.shape != (store.num_examples,) or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(f"groups must be {store.num_examples} integer group ids, got shape {groups.shape}")
    if len(groups) and groups.min() < 0:
        raise ValueError("group ids must be non-negative")
    g = int(groups.max()) + 1 if len(groups) else 0
    if num_groups is not None:
        if num_groups < g:
            raise ValueError(f"num_groups={num_groups} but group ids go up to {g - 1}")
        g = num_groups
    return groups.astype(np.int64), g


def group_responsibility(
    store: ResponsibilityStore,
    name: str,
    groups: np.ndarray | None = None,
    sign: Sign = "abs",
    *,
    num_groups: int | None = None,
    budget_bytes: int = DEFAULT_FOLD_BUDGET,
) -> np.ndarray:
    """Sum of R over the examples of each group: ``(G, *r_shape)`` float64; default groups = store labels.

    Memory stays within ``budget_bytes`` (R is read in column blocks, with a progress bar when it lasts).
    """
    ids, g = resolve_groups(store, groups, num_groups)
    p = store.param(name)
    index = torch.from_numpy(ids)
    out = np.zeros((g, p.units), np.float64)
    for cols, block in store.iter_blocks(name, sign, budget_bytes=budget_bytes):
        acc = torch.zeros((g, block.shape[1]), dtype=torch.float64)
        acc.index_add_(0, index, torch.from_numpy(block).double())
        out[:, cols] = acc.numpy()
    return out.reshape(g, *p.r_shape)


def class_share(
    store: ResponsibilityStore,
    name: str,
    level: str = "weight",
    sign: Sign = "abs",
    *,
    groups: np.ndarray | None = None,
    num_groups: int | None = None,
) -> np.ndarray:
    """Fraction of R coming from each class (or group): ``(G, *r_shape)``, ``(G, units)`` or ``(G,)``.

    ``level="unit"`` sums over the weights of each output unit (dim 0) first, ``"layer"`` over everything.
    Fractions sum to 1 over groups; where the total R is 0 (a weight never changed) they are all 0.
    """
    check_choice("level", level, ShareLevel)
    sums = group_responsibility(store, name, groups, sign, num_groups=num_groups)
    g = sums.shape[0]
    if level == "unit":
        sums = sums.reshape(g, sums.shape[1], -1).sum(2) if sums.ndim > 1 else sums
    elif level == "layer":
        sums = sums.reshape(g, -1).sum(1)
    total = sums.sum(0, keepdims=True)
    return np.divide(sums, total, out=np.zeros_like(sums), where=total > 0)


def interclass_matrix(
    store: ResponsibilityStore,
    name: str,
    labels: np.ndarray | None = None,
    sign: Sign = "abs",
    *,
    normalize: bool = False,
    num_classes: int | None = None,
) -> np.ndarray:
    """``(training classes, output units)`` matrix of R summed over a class's examples and a unit's weights.

    ``name`` is the output layer's weight (weight or neuron granularity). ``normalize`` divides each column by
    its sum (columns with no R stay 0).
    """
    sums = group_responsibility(store, name, labels, sign, num_groups=num_classes)
    m = sums.reshape(sums.shape[0], sums.shape[1], -1).sum(2) if sums.ndim > 1 else sums[:, None]
    if normalize:
        total = m.sum(0, keepdims=True)
        m = np.divide(m, total, out=np.zeros_like(m), where=total > 0)
    return m


def diagonal_dominance(matrix: np.ndarray) -> float:
    """Mean diagonal entry / mean off-diagonal entry of a square matrix (inf if the off-diagonal is all 0)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"diagonal_dominance needs a square matrix of size >= 2, got shape {m.shape}")
    diag = float(np.mean(np.diag(m)))
    off = float((m.sum() - np.trace(m)) / (m.size - len(m)))
    if off == 0:
        return float("inf") if diag > 0 else float("nan")
    return diag / off
