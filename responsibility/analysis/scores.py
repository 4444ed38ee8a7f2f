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

- :func:`held_out_loss`: the cross-entropy of an example's label under a linear read-out of its *recorded*
  output-layer input, fitted on the other examples only (cross-fitting). This is confident learning's recipe
  (cleanlab's out-of-sample predicted probabilities and self-confidence, Northcutt et al., 2021) applied as a
  linear probe, so its idea is not new; what the record adds is the features: with per-example attribution the
  journal keeps each example's input to a Linear layer at every step that held it (the ``in`` factor of its
  gradient), so the probe reads the representation the network had *at that example's own visit* without another
  forward pass or any retraining. Measured in ``docs/results/mislabel_score.md``: ahead of final loss and AUM on
  full Fashion-MNIST, not on the paper's 1,000-image A.3 task.

Every score takes ``steps=(start, stop)`` to look at part of training only, e.g. the last epoch
(``store.epoch_steps(-1)``): early steps, when every example is still unfitted, then do not drown the signal.
The R-based scores stream R block by block (:meth:`ResponsibilityStore.iter_parts`), :func:`held_out_loss` the
journal's per-example values; memory stays bounded either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from responsibility.analysis.groups import resolve_groups
from responsibility.choices import Sign
from responsibility.errors import LayerSelectionError
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


def held_out_loss(
    store: ResponsibilityStore,
    parameters: Sequence[str] | None = None,
    labels: np.ndarray | None = None,
    budget_bytes: int = DEFAULT_FOLD_BUDGET,
    steps: tuple[int, int] | None = None,
    *,
    folds: int = 5,
    c: float = 0.01,
    seed: int = 0,
) -> np.ndarray:
    """Held-out cross-entropy ``−log q(label(m))`` of every example under a read-out of its recorded input: (N,).

    The features of example m are its inputs to the Linear layers of ``parameters`` (their weights, recorded with
    per-example attribution; default: the last such layer with one output per class) at its last step inside
    ``steps`` (default: the whole journal, so its last visit; :func:`recorded_inputs`), standardised over the
    examples. The examples are dealt into ``folds`` random folds that do not depend on the labels
    (``default_rng(seed).permutation(N)[m] % folds``); for each fold a multinomial logistic regression is fitted
    to the labels of the other folds (L2 as scikit-learn's ``LogisticRegression(C=c)``: minimise
    ``c · Σ cross-entropy + ½‖W‖²``, bias not penalised) and gives ``q`` for the held-out examples. So no
    example's own label shapes the read-out that judges it. Higher = inspect first.

    This is cleanlab's self-confidence (``1 − q(label)``, here as ``−log q``) from out-of-sample probabilities of
    a linear probe: confident learning (Northcutt et al., 2021) with the network's recorded representation as
    the features. The run's own output layer is an under-fitted read-out of the same inputs shaped by every
    example's own label (its final loss); the converged, regularised read-out from the other examples judges
    each example by what the rest of the training set says about examples that look like it. What only the
    training record gives is the features: each example's input at its own visit, read from the journal, with no
    forward pass over the training set, no checkpoint and no retraining (cleanlab's usual recipe trains one model
    per fold).
    """
    groups, g = resolve_groups(store, labels, None)
    names = _linear_weights(store, g) if parameters is None else list(parameters)
    if c <= 0:
        raise ValueError(f"c must be positive, got {c}")
    if not 2 <= folds <= store.num_examples:
        raise ValueError(f"folds must be in [2, {store.num_examples}], got {folds}")
    x = np.concatenate([recorded_inputs(store, name, steps, budget_bytes) for name in names], axis=1)
    std = x.std(axis=0)
    features = torch.from_numpy((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0))
    y = torch.from_numpy(groups)
    # Random folds that do not depend on the labels: fold[m] = permutation(N)[m] mod folds.
    fold = np.random.default_rng(seed).permutation(store.num_examples) % folds
    log_q = np.zeros(store.num_examples)
    for k in range(folds):
        held = torch.from_numpy(fold == k)
        w, b = _logistic_regression(features[~held], y[~held], g, c)
        logits = features[held] @ w + b
        log_q[held.numpy()] = F.log_softmax(logits, dim=1).gather(1, y[held].unsqueeze(1))[:, 0].numpy()
    return -log_q


def recorded_inputs(
    store: ResponsibilityStore,
    name: str,
    steps: tuple[int, int] | None = None,
    budget_bytes: int = DEFAULT_FOLD_BUDGET,
) -> np.ndarray:
    """Each example's input to the Linear layer of weight ``name`` at its last step in ``steps``: (N, in), float64.

    Read from the journal's per-example values (the ``in`` factor of the weight's per-example gradient), newest
    steps first, in blocks of about ``budget_bytes``; stops once every example has been found.
    """
    p = store.param(name)
    if p.example_form != "outer":
        raise LayerSelectionError(
            f"{name!r} keeps no per-example inputs in {store.path}: they are journaled for the weight of an "
            "nn.Linear recorded with per-example attribution",
            fixes=[{"attribution": "per_example"}],
        )
    start, stop = (0, store.steps) if steps is None else steps
    if not 0 <= start <= stop <= store.steps:
        raise IndexError(f"steps [{start}, {stop}) outside the journal's [0, {store.steps})")
    columns = store.spec.example_columns()[name]["in"]
    ids, counts = store.membership(start, stop)
    offsets = np.concatenate([[0], np.cumsum(counts)])  # offsets[i]: ids of steps [start, start + i)
    max_rows = max(1, budget_bytes // (4 * store.spec.example_width))
    out = np.zeros((store.num_examples, p.shape[1]))
    found = np.zeros(store.num_examples, dtype=bool)
    last = stop
    while last > start and not found.all():
        # The block [first, last): as many steps back as fit the budget, at least one.
        first = min(start + int(np.searchsorted(offsets, offsets[last - start] - max_rows)), last - 1)
        block = ids[offsets[first - start] : offsets[last - start]]
        values = store.journal_examples(first, last)[:, columns]
        # Each example's newest visit in the block (its last occurrence), unless a newer block had it.
        newest = len(block) - 1 - np.unique(block[::-1], return_index=True)[1]
        newest = newest[~found[block[newest]]]
        out[block[newest]] = values[newest]
        found[block[newest]] = True
        last = first
    if not found.all():
        missing = np.flatnonzero(~found)
        raise ValueError(
            f"{len(missing)} examples (ids {missing[:5].tolist()}...) are in no step of [{start}, {stop}): "
            "nothing was recorded for them; widen steps"
        )
    return out


def _linear_weights(store: ResponsibilityStore, num_classes: int) -> list[str]:
    """The default of :func:`held_out_loss`: the last recorded Linear weight with inputs journaled and one output
    per class."""
    fitting = [
        n for n in store.parameters if store.param(n).example_form == "outer" and store.param(n).shape[0] == num_classes
    ]
    if not fitting:
        raise LayerSelectionError(
            f"no Linear weight with {num_classes} outputs (one per class) is recorded with per-example attribution "
            f"in {store.path}; pass parameters=[...] naming Linear weights recorded per example",
            fixes=[{"attribution": "per_example"}],
        )
    return fitting[-1:]


def _logistic_regression(x: torch.Tensor, y: torch.Tensor, classes: int, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (features, classes) and bias minimising ``mean cross-entropy + ‖W‖² / (2 c n)`` (L-BFGS, float64)."""
    w = torch.zeros(x.shape[1], classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(classes, dtype=x.dtype, requires_grad=True)
    penalty = 0.5 / (c * max(len(y), 1))
    opt = torch.optim.LBFGS(
        [w, b],
        max_iter=500,
        tolerance_grad=1e-7,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + penalty * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(objective)
    return w.detach(), b.detach()
