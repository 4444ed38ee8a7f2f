"""The JSON behind each view of the explorer, from one or more runs (see :mod:`responsibility.explorer.derived`).

Every function takes validated arguments (the routes check ids and ranges) and returns plain JSON values; labels are
class indices, the front end names them with the run's class names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from responsibility.analysis.compare import compare_predictions, percentiles, score_shift
from responsibility.curation import CurationState
from responsibility.evaluation.metrics import detection_curve, recall_at
from responsibility.explorer import derived
from responsibility.explorer.run import Run

__all__ = ["classes", "compare", "confusion", "detection", "example", "suspects", "test_input", "tests"]

CURVE_POINTS = 200


def _order(run: Run, name: str, descending: bool) -> np.ndarray:
    """Example ids ranked by a score, ties to the smaller id (cached per run)."""

    def rank() -> np.ndarray:
        values = derived.score(run, name)
        return np.argsort(-values if descending else values, kind="stable")

    return run.memo(f"order-{name}-{descending}", rank)


def example_row(run: Run, i: int, state: CurationState | None) -> dict[str, Any]:
    """One training example as every list shows it."""
    pred = derived.predictions(run)["train"]
    labels = run.labels
    row: dict[str, Any] = {
        "id": i,
        "label": int(labels[i]),
        "predicted": int(pred[i].argmax()),
        "flipped": bool(run.flipped[i]),
        "clean": int(run.clean_labels[i]),
        "removed_in_run": bool(run.removed[i]),
        "weight_in_run": float(run.weights[i]),
    }
    if state is not None:
        row["curation"] = state.of(i)
    return row


def suspects(
    run: Run,
    state: CurationState,
    *,
    score: str,
    descending: bool,
    cls: int | None,
    only: str,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    """A page of training examples ranked by ``score``, optionally of one given class, flipped or curated ones."""
    values = derived.score(run, score)
    order = _order(run, score, descending)
    keep = np.ones(run.num_examples, dtype=bool)
    if cls is not None:
        keep &= run.labels == cls
    if only == "flipped":
        keep &= run.flipped
    elif only == "curated":
        touched = set(state.labels) | state.removed | set(state.weights) | set(state.notes) | set(state.tags)
        mask = np.zeros(run.num_examples, dtype=bool)
        mask[list(touched)] = True
        keep &= mask
    ranks = np.empty(run.num_examples, dtype=np.int64)
    ranks[order] = np.arange(run.num_examples)
    chosen = order[keep[order]]
    rows = []
    for i in chosen[offset : offset + limit].tolist():
        rows.append({**example_row(run, i, state), "score": float(values[i]), "rank": int(ranks[i]) + 1})
    return {"score": score, "description": derived.SCORES[score], "total": int(len(chosen)), "rows": rows}


def top_ids(run: Run, score: str, k: int, cls: int | None) -> list[int]:
    """The ``k`` most suspicious example ids by ``score`` (of class ``cls`` if given): for bulk actions."""
    order = _order(run, score, True)
    if cls is not None:
        order = order[run.labels[order] == cls]
    return order[:k].tolist()


def detection(run: Run) -> dict[str, Any]:
    """Fraction of the flipped labels found against the fraction of examples checked, for every score."""
    return run.memo("detection", lambda: _detection(run))


def _detection(run: Run) -> dict[str, Any]:
    flipped = np.flatnonzero(run.flipped)
    if not len(flipped):
        return {"flipped": 0, "curves": []}
    n = run.num_examples
    at = np.unique(np.linspace(1, n, min(CURVE_POINTS, n)).round().astype(np.int64))
    curves = []
    for name in derived.score_names(run):
        values = derived.score(run, name)
        found = detection_curve(values, flipped)
        curves.append(
            {
                "score": name,
                "checked": (at / n).tolist(),
                "found": found[at - 1].tolist(),
                "recall_10": recall_at(values, flipped, 0.1),
                "recall_20": recall_at(values, flipped, 0.2),
                "auc": float(found.mean()),
            }
        )
    return {"flipped": int(len(flipped)), "curves": curves}


def confusion(run: Run) -> dict[str, Any]:
    """Test inputs counted by (true class, predicted class)."""
    pred = derived.predictions(run)["test"].argmax(1)
    c = run.num_classes
    matrix = np.zeros((c, c), dtype=np.int64)
    np.add.at(matrix, (run.test_labels, pred), 1)
    return {"matrix": matrix.tolist(), "accuracy": float((pred == run.test_labels).mean())}


def _test_row(run: Run, i: int) -> dict[str, Any]:
    logits = derived.predictions(run)["test"][i]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    pred = int(p.argmax())
    return {"index": i, "true": int(run.test_labels[i]), "predicted": pred, "confidence": float(p[pred])}


def tests(
    run: Run, *, true: int | None, predicted: int | None, errors: bool, offset: int, limit: int
) -> dict[str, Any]:
    """A page of test inputs, optionally of one (true, predicted) cell or only the misclassified ones."""
    pred = derived.predictions(run)["test"].argmax(1)
    keep = np.ones(run.num_tests, dtype=bool)
    if true is not None:
        keep &= run.test_labels == true
    if predicted is not None:
        keep &= pred == predicted
    if errors:
        keep &= pred != run.test_labels
    chosen = np.flatnonzero(keep)
    return {"total": int(len(chosen)), "rows": [_test_row(run, i) for i in chosen[offset : offset + limit].tolist()]}


def _explanation_rows(run: Run, ex: dict[str, np.ndarray], sign: str, i: int, state: CurationState | None) -> list:
    ids, scores = ex[f"{sign}_ids"][i], ex[f"{sign}_scores"][i]
    return [{**example_row(run, int(m), state), "score": float(s)} for m, s in zip(ids, scores, strict=True) if s > 0]


def test_input(run: Run, i: int, state: CurationState | None) -> dict[str, Any]:
    """One test input, its prediction and the training examples that most support and oppose it."""
    ex = derived.explanations(run)
    logits = derived.predictions(run)["test"][i]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = np.argsort(-p, kind="stable")[:3]
    return {
        **_test_row(run, i),
        "probabilities": [{"class": int(c), "p": float(p[c])} for c in top],
        "supports": _explanation_rows(run, ex, "pos", i, state),
        "opposes": _explanation_rows(run, ex, "neg", i, state),
    }


def classes(run: Run, state: CurationState, k: int) -> dict[str, Any]:
    """The inter-class matrix (columns normalised to sum to 1) and each unit's most responsible examples."""
    arrays = derived.classes(run)
    matrix = arrays["matrix"]
    total = matrix.sum(0, keepdims=True)
    normalized = np.divide(matrix, total, out=np.zeros_like(matrix), where=total > 0)
    diag = float(np.trace(normalized) / len(normalized))
    off = float((normalized.sum() - np.trace(normalized)) / max(1, normalized.size - len(normalized)))
    unit = arrays["unit"]
    ranked = run.memo(f"class-top-{k}", lambda: np.argsort(-unit, axis=0, kind="stable")[:k].T)
    top = [
        [{**example_row(run, int(m), state), "score": float(unit[m, c])} for m in ids] for c, ids in enumerate(ranked)
    ]
    return {"matrix": normalized.tolist(), "dominance": diag / off if off > 0 else None, "top": top}


def example(runs: list[Run], r: int, i: int, state: CurationState) -> dict[str, Any]:
    """One training example: scores and their percentiles, responsibility per epoch, its label and prediction in
    every open run on the same data, and the test predictions it supports or opposes most."""
    run = runs[r]
    scores = {}
    for name in derived.score_names(run):
        values = derived.score(run, name)
        pct = run.memo(f"percentiles-{name}", lambda values=values: percentiles(values))
        scores[name] = {"value": float(values[i]), "percentile": float(pct[i])}
    out: dict[str, Any] = {**example_row(run, i, state), "scores": scores, "epochs": None, "runs": []}
    if run.output_params:
        ep = derived.epochs(run)
        out["epochs"] = {"epochs": ep["epochs"].tolist(), "abs": ep["abs"][i].tolist(), "push": ep["push"][i].tolist()}
    for j, other in enumerate(runs):
        if same_training_set(run, other):
            row = example_row(other, i, None)
            out["runs"].append({"run": j, "name": other.name, **row})
    if run.output_weight:
        ex = derived.explanations(run)
        for sign, key in (("pos", "supports"), ("neg", "opposes")):
            hits = np.argwhere(ex[f"{sign}_ids"] == i)
            values = ex[f"{sign}_scores"][hits[:, 0], hits[:, 1]] if len(hits) else np.zeros(0)
            order = np.argsort(-values, kind="stable")[:12]
            out[key] = [{**_test_row(run, int(hits[o, 0])), "score": float(values[o])} for o in order]
    return out


def same_training_set(a: Run, b: Run) -> bool:
    return a.num_examples == b.num_examples and np.array_equal(a.original_labels, b.original_labels)


def compare(a: Run, b: Run, state_b: CurationState | None) -> dict[str, Any]:
    """Run B against run A on the same test set: accuracy, fixed and broken predictions with both explanations,
    and how the examples curated for B moved in responsibility and scores."""
    if a.num_tests != b.num_tests or not np.array_equal(a.test_labels, b.test_labels):
        raise ValueError(f"runs {a.name} and {b.name} have different test sets; they cannot be compared")
    pa, pb = (derived.predictions(r)["test"].argmax(1) for r in (a, b))
    result = compare_predictions(a.test_labels, pa, pb, a.num_classes)
    doc: dict[str, Any] = {"a": a.name, "b": b.name, **result.to_json()}
    for key in ("fixed", "broken"):
        doc[key] = [_compared_input(a, b, int(i)) for i in getattr(result, key)[:50]]
    doc["curated"] = []
    if same_training_set(a, b) and b.applied is not None:
        st = b.applied.state
        ids = sorted(set(st.labels) | st.removed | set(st.weights))
        doc["shifts"] = {
            name: score_shift(np.array(ids, np.int64), derived.score(a, name), derived.score(b, name))
            for name in sorted(set(derived.score_names(a)) & set(derived.score_names(b)))
        }
        doc["curated"] = [
            {"id": i, "label_a": int(a.labels[i]), "label_b": int(b.labels[i]), "removed": i in st.removed,
             "weight": st.weights.get(i, 1.0), "flipped_a": bool(a.flipped[i])}
            for i in ids
        ]  # fmt: skip
    return doc


def _compared_input(a: Run, b: Run, i: int) -> dict[str, Any]:
    row: dict[str, Any] = {"index": i, "true": int(a.test_labels[i])}
    for key, run in (("a", a), ("b", b)):
        item = _test_row(run, i)
        row[key] = {"predicted": item["predicted"], "confidence": item["confidence"], "supports": []}
        if run.output_weight:
            ex = derived.explanations(run)
            row[key]["supports"] = [
                {"id": int(m), "label": int(run.labels[m]), "score": float(s)}
                for m, s in zip(ex["pos_ids"][i][:3], ex["pos_scores"][i][:3], strict=True)
                if s > 0
            ]
    return row
