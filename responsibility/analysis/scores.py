"""Example-level scores from a store, for data debugging: which training examples look wrong?

- :func:`self_responsibility`: an example's total responsibility over the chosen parameters, Σ_weights R[m]
  (the paper ranks examples by it, on the first layer). With the uniform rule it measures how much the weights
  moved while the example was in the batch: loud, hard or mislabelled examples move them more.
- :func:`class_agreement`: a new score built from the *signed* arrays. Each example's net push on the weights,
  D[m] = R_pos[m] − R_neg[m], is compared (cosine) with the mean push of the examples that carry the same label.
  A mislabelled example is trained towards another class's targets, so its push tends to disagree with its
  labelled class: rank by *low* agreement. Returned as a suspicion score (1 − cosine, in [0, 2]).
- :func:`label_push`: a second score from the signed arrays, on an output layer (dim 0 = classes). An example's
  net push D = R_pos − R_neg on the weights of its *own label's* output unit. With per-example attribution and
  plain SGD the bias part is exactly ``lr/B · Σ_steps (1 − p_label)``: the example kept pulling its label up
  because the model never came to predict it. Mislabelled examples do that for the whole of training. (In that
  exact-SGD case, with non-negative inputs to the output layer, it is half of :func:`self_responsibility` of the
  same parameters; the two differ under momentum/Adam and with the uniform rule.)

Every score takes ``steps=(start, stop)`` to look at part of training only, e.g. the last epoch
(``store.epoch_steps(-1)``): early steps, when every example is still unfitted, then do not drown the signal.
All of them stream R block by block (:meth:`ResponsibilityStore.iter_parts`), so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from responsibility.analysis.groups import resolve_groups
from responsibility.choices import Sign
from responsibility.store import DEFAULT_FOLD_BUDGET, ResponsibilityStore


def self_responsibility(
    store: ResponsibilityStore,
    parameters: Sequence[str] | None = None,
    sign: Sign = "abs",
    budget_bytes: int = DEFAULT_FOLD_BUDGET,
    steps: tuple[int, int] | None = None,
) -> np.ndarray:
    """Σ over the weights of ``parameters`` (default all) of R[m]: shape (num_examples,), float64."""
    total = np.zeros(store.num_examples)
    for name in parameters or store.parameters:
        for _, block in store.iter_blocks(name, sign, budget_bytes, steps):
            total += block.sum(axis=1, dtype=np.float64)
    return total


def class_agreement(
    store: ResponsibilityStore,
    parameters: Sequence[str] | None = None,
    labels: np.ndarray | None = None,
    budget_bytes: int = DEFAULT_FOLD_BUDGET,
    steps: tuple[int, int] | None = None,
) -> np.ndarray:
    """Suspicion score 1 − cos(D[m], mean_{label(j)=label(m)} D[j]) with D = R_pos − R_neg: (num_examples,)."""
    groups, g = resolve_groups(store, labels, None)
    dots = np.zeros(store.num_examples)
    norms = np.zeros(store.num_examples)
    class_norms = np.zeros(g)
    for name in parameters or store.parameters:
        for _, pos, neg in store.iter_parts(name, budget_bytes, steps):
            d = pos.double().numpy() - neg.double().numpy()
            means = np.zeros((g, d.shape[1]))
            np.add.at(means, groups, d)
            means /= np.maximum(np.bincount(groups, minlength=g), 1)[:, None]
            dots += np.einsum("ij,ij->i", d, means[groups])
            norms += np.einsum("ij,ij->i", d, d)
            class_norms += np.einsum("ij,ij->i", means, means)
    denom = np.sqrt(norms) * np.sqrt(class_norms[groups])
    cosine = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
    return 1.0 - cosine


def label_push(
    store: ResponsibilityStore,
    parameters: Sequence[str] | None = None,
    labels: np.ndarray | None = None,
    budget_bytes: int = DEFAULT_FOLD_BUDGET,
    steps: tuple[int, int] | None = None,
) -> np.ndarray:
    """Σ of D[m] = R_pos[m] − R_neg[m] over the weights of output unit label(m): shape (num_examples,), float64.

    ``parameters`` must be output-layer parameters whose first dimension indexes the classes (a Linear weight
    or bias, at weight or neuron granularity); default: those of the last recorded layer with one unit per class.
    """
    groups, g = resolve_groups(store, labels, None)
    if parameters is None:
        fitting = [n for n in store.parameters if store.param(n).r_shape[0] == g]
        if not fitting:
            raise ValueError(f"no recorded parameter has {g} output units (one per class) in {store.path}")
        layer = fitting[-1].rpartition(".")[0]
        names = [n for n in fitting if n.rpartition(".")[0] == layer]
    else:
        names = list(parameters)
    total = np.zeros(store.num_examples)
    rows = np.arange(store.num_examples)
    for name in names:
        p = store.param(name)
        if p.r_shape[0] != g:
            raise ValueError(
                f"label_push needs an output layer with one unit per class ({g}); {name!r} has R shape {p.r_shape}"
            )
        per_unit = p.units // g
        for cols, pos, neg in store.iter_parts(name, budget_bytes, steps):
            d = pos.double().numpy() - neg.double().numpy()
            unit = np.arange(cols.start, cols.stop) // per_unit
            starts = np.flatnonzero(np.diff(unit, prepend=-1))
            # Sums over each output unit's columns in this block; every example keeps its own label's.
            sums = np.zeros((store.num_examples, g))
            sums[:, unit[starts]] = np.add.reduceat(d, starts, axis=1)
            total += sums[rows, groups]
    return total
