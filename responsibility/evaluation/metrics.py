"""Evaluation metrics for training-data attribution.

- Mislabel detection from a ranking score (higher = inspect first): :func:`detection_curve`, :func:`recall_at`,
  :func:`mislabel_auc`.
- quanda-style metrics, reimplemented (no quanda dependency): :func:`randomization_test` (the trained and the
  re-initialised model explain the same targets) with its correlation :func:`model_randomization`,
  :func:`class_detection`, :func:`topk_cardinality`, :func:`auprc` (spurious-correlation test) and
  :func:`linear_datamodeling_score`; :func:`spearman` is their rank correlation.
- Every training example's score for a test input (what these metrics take) is
  :func:`responsibility.query.attribute`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

Model = TypeVar("Model")


def detection_curve(scores: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """Fraction of flipped examples found after inspecting the top 1..N examples (ties: smaller id first)."""
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.asarray(flipped, dtype=np.int64)] = True
    if not mask.any():
        raise ValueError("no flipped examples: detection is undefined")
    order = np.argsort(-scores, kind="stable")
    return np.cumsum(mask[order]) / mask.sum()


def recall_at(scores: np.ndarray, flipped: np.ndarray, fraction: float) -> float:
    """Fraction of flipped examples among the top ``fraction`` of the ranking."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    curve = detection_curve(scores, flipped)
    return float(curve[max(1, int(round(fraction * len(curve)))) - 1])


def mislabel_auc(scores: np.ndarray, flipped: np.ndarray) -> float:
    """Area under the cumulative detection curve divided by N (quanda's mislabeling-detection score); random ≈ 0.5."""
    return float(detection_curve(scores, flipped).mean())


# ------------------------------------------------------------------------------- quanda-style sanity metrics
def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, ties sharing their average rank (as ``scipy.stats.rankdata``)."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, axis=-1, kind="stable")
    sorted_v = np.take_along_axis(v, order, axis=-1)
    n = v.shape[-1]
    ranks = np.empty_like(v)
    flat_sorted = sorted_v.reshape(-1, n)
    flat_order = order.reshape(-1, n)
    flat_ranks = ranks.reshape(-1, n)
    for row in range(flat_sorted.shape[0]):
        s = flat_sorted[row]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        ends = np.r_[starts[1:], n]  # each tie group is positions [start, end)
        average = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1..end
        flat_ranks[row, flat_order[row]] = np.repeat(average, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of ``a`` and ``b`` along the last axis (Pearson of the average-tie ranks).

    Returns one value per row (a float for 1-D input); NaN where either row is constant.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim == 0 or a.shape[-1] < 2:
        raise ValueError(f"need two arrays of one shape with at least 2 values per row, got {a.shape}, {b.shape}")
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean(axis=-1, keepdims=True)
    rb -= rb.mean(axis=-1, keepdims=True)
    denom = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denom > 0, (ra * rb).sum(-1) / np.where(denom > 0, denom, 1.0), np.nan)
    return out[()] if out.ndim == 0 else out


def _mean_defined(values: np.ndarray, what: str) -> float:
    if np.all(np.isnan(values)):
        raise ValueError(f"{what} is undefined: every row is constant")
    return float(np.nanmean(values))


def model_randomization(scores: np.ndarray, randomized_scores: np.ndarray) -> float:
    """Mean over test inputs of the Spearman correlation between the explanation scores (n_test, N) under the
    trained model and under a re-initialised model. Lower is better: explanations that survive randomising the
    model do not depend on what it learnt. Constant rows are skipped.

    Both score arrays must explain the SAME targets (the trained model's); :func:`randomization_test` computes
    them that way.
    """
    return _mean_defined(spearman(scores, randomized_scores), "model randomization")


def randomization_test(
    explain: Callable[[Model, np.ndarray], np.ndarray], trained: Model, randomized: Model, targets: np.ndarray
) -> float:
    """The model randomization test as quanda runs it and in Adebayo et al.'s (2018) sense.

    ``explain(model, targets)`` returns the (n_test, N) scores of every training example for each test input,
    explaining class ``targets[i]`` for input i; ``targets`` are the trained model's predictions. The
    re-initialised model explains the SAME targets, not its own predictions: the test asks whether the
    explanation of one fixed output depends on the learnt weights. (Letting the randomized model explain its own
    prediction mixes in how often it changes class, which in a two-class task flips a signed ranking and so
    lowers the correlation for a reason unrelated to the explanation.) Returns :func:`model_randomization`.
    """
    targets = np.asarray(targets)
    return model_randomization(explain(trained, targets), explain(randomized, targets))


def class_detection(top1_labels: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of test inputs whose most responsible (top-1) training example carries the predicted class."""
    top1, pred = np.asarray(top1_labels), np.asarray(predicted)
    if top1.shape != pred.shape or top1.ndim != 1 or len(top1) == 0:
        raise ValueError(f"need two non-empty 1-D arrays of one shape, got {top1.shape}, {pred.shape}")
    return float(np.mean(top1 == pred))


def topk_cardinality(example_ids: np.ndarray) -> float:
    """Distinct training examples among all test explanations' top-k, divided by n_test·k (1 = no repeats)."""
    ids = np.asarray(example_ids)
    if ids.ndim != 2 or ids.size == 0:
        raise ValueError(f"example_ids must be a non-empty (n_test, k) array, got shape {ids.shape}")
    return len(np.unique(ids)) / ids.size


def auprc(scores: np.ndarray, mask: np.ndarray) -> float:
    """Area under the precision-recall curve of a ranking (higher score first, ties to the smaller id) against a
    boolean mask of relevant examples, as average precision: the mean, over the relevant examples, of the
    precision of the ranking's prefix that ends at each of them."""
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if scores.shape != mask.shape or scores.ndim != 1:
        raise ValueError(f"scores and mask must be 1-D of one shape, got {scores.shape}, {mask.shape}")
    if not mask.any():
        raise ValueError("mask has no relevant example: AUPRC is undefined")
    hits = mask[np.argsort(-scores, kind="stable")]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def linear_datamodeling_score(attributions: np.ndarray, subsets: np.ndarray, outputs: np.ndarray) -> float:
    """Linear datamodeling score (LDS).

    ``attributions`` (n_test, N): τ(x, i); ``subsets`` (S, N) boolean: the training subsets S_s that models were
    retrained on; ``outputs`` (S, n_test): each retrained model's output on each test input. The attribution
    predicts ``Σ_{i ∈ S_s} τ(x, i)`` for subset s; LDS is the Spearman correlation, over the subsets, between
    predicted and actual outputs, averaged over test inputs (constant rows skipped).
    """
    tau = np.asarray(attributions, dtype=np.float64)
    masks = np.asarray(subsets, dtype=bool)
    out = np.asarray(outputs, dtype=np.float64)
    if tau.ndim != 2 or masks.ndim != 2 or masks.shape[1] != tau.shape[1] or out.shape != (len(masks), len(tau)):
        raise ValueError(
            f"shapes do not fit: attributions {tau.shape}, subsets {masks.shape}, outputs {out.shape} "
            "(expected (n_test, N), (S, N), (S, n_test))"
        )
    predicted = masks.astype(np.float64) @ tau.T  # (S, n_test)
    return _mean_defined(spearman(predicted.T, out.T), "LDS")


# ------------------------------------------------------------------------- overlap of explanations (paper A.5)
def _id_rows(ids_a: np.ndarray, ids_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(ids_a), np.asarray(ids_b)
    if a.ndim != 2 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"need two non-empty (n, k) id arrays of one shape, got {a.shape}, {b.shape}")
    return a, b


def topk_jaccard(ids_a: np.ndarray, ids_b: np.ndarray) -> np.ndarray:
    """Jaccard index |A ∩ B| / |A ∪ B| of the id sets of each row of two ``(n, k)`` arrays, ``(n,)`` float64.

    Rows are sets: repeated ids within a row count once.
    """
    a, b = _id_rows(ids_a, ids_b)
    out = np.empty(len(a))
    for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
        sa, sb = set(ra.tolist()), set(rb.tolist())
        out[i] = len(sa & sb) / len(sa | sb)
    return out


def top1_agreement(ids_a: np.ndarray, ids_b: np.ndarray) -> float:
    """Fraction of rows whose first (most responsible) ids agree; ``(n, k)`` or ``(n,)`` arrays."""
    a, b = (np.asarray(v) for v in (ids_a, ids_b))
    a, b = (v[:, None] if v.ndim == 1 else v for v in (a, b))
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b) or a.size == 0 or b.size == 0:
        raise ValueError(f"need two non-empty id arrays with one row per input, got {a.shape}, {b.shape}")
    return float(np.mean(a[:, 0] == b[:, 0]))


def expected_random_jaccard(n: int, k: int) -> float:
    """Expected Jaccard index of two independent, uniformly drawn k-subsets of ``n`` items (chance overlap).

    The intersection size i is hypergeometric, P(i) = C(k, i)·C(n − k, k − i) / C(n, k), and the Jaccard index
    is i / (2k − i). For k = 1 this is 1 / n.
    """
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    from math import comb

    total = comb(n, k)
    return float(sum(comb(k, i) * comb(n - k, k - i) / total * i / (2 * k - i) for i in range(k + 1)))


def shuffled_jaccard(ids_a: np.ndarray, ids_b: np.ndarray, groups: np.ndarray, seed: int = 0) -> float:
    """Mean Jaccard between row i of ``ids_a`` and row π(i) of ``ids_b``, π a random permutation that moves every
    row to another row of its group (e.g. inputs with the same predicted class); rows alone in their group are
    skipped. A baseline for :func:`topk_jaccard`: the overlap explained by the group (class-wide hub examples)
    rather than by the particular input.
    """
    a, b = _id_rows(ids_a, ids_b)
    g = np.asarray(groups)
    if g.shape != (len(a),):
        raise ValueError(f"groups must have one entry per row ({len(a)}), got shape {g.shape}")
    rng = np.random.default_rng(seed)
    rows, partners = [], []
    for value in np.unique(g):
        members = np.flatnonzero(g == value)
        if len(members) < 2:
            continue
        # A random cyclic shift of a random order: a permutation of the members without fixed points.
        order = rng.permutation(members)
        shift = int(rng.integers(1, len(members)))
        rows.append(order)
        partners.append(np.roll(order, shift))
    if not rows:
        raise ValueError("no group has two rows: the shuffled baseline is undefined")
    r, p = np.concatenate(rows), np.concatenate(partners)
    return float(topk_jaccard(a[r], b[p]).mean())
