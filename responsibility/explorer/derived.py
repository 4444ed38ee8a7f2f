"""What the explorer computes from a run, once per run (then cached on disk): predictions, example scores, the
explanations of every test input, per-class responsibility and each example's responsibility per epoch.

Responsibility is always read block by block (the store's ``iter_blocks``/``iter_parts`` and the analysis
functions built on them), so a 60,000-example run never needs R in memory.

Scores, all "higher = look first":

- ``label_push``: the example's net push (R_pos − R_neg) on its own label's output unit; mislabelled examples keep
  pulling their label up because the model never comes to predict it.
- ``self_responsibility``: the example's total |R| over the output layer: how much the output weights moved while
  it was trained on.
- ``class_agreement``: 1 − cosine between the example's signed push and its class's mean push.
- ``final_loss``: cross-entropy of the trained model on the example's training label (a peer, no responsibility).

Explanations of a test input: the library's default, input-specific explanation
(:func:`responsibility.attribute`: each training example's recorded push on the weights, dotted with this input's
gradient of its predicted class's score, normalised per layer). An example with a positive score raised the
predicted class's score for this input: it *supports* the prediction; one with a negative score lowered it: it
*opposes* it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from responsibility.analysis import class_agreement, label_push, self_responsibility
from responsibility.choices import SUSPECT_SCORES
from responsibility.evaluation.peers import final_loss
from responsibility.explorer.cache import Arrays
from responsibility.explorer.run import Run
from responsibility.progress import bar, quiet
from responsibility.query import Explainer

__all__ = ["EXPLANATION_DEPTH", "SCORES", "classes", "epochs", "explanations", "predictions", "score", "score_names"]

EXPLANATION_DEPTH = 10
_BATCH = 1024
_EXPLAIN_BATCH = 256  # test inputs per attribute() call: (256, N) float32 scores at a time

# What each score of SUSPECT_SCORES measures, in that order.
SCORES: dict[str, str] = dict(
    zip(
        SUSPECT_SCORES,
        (
            "net push on its own label's output unit (mislabelled examples keep pushing)",
            "total |R| over the output layer (how much the output weights moved for it)",
            "1 - cosine between its push and its class's mean push",
            "cross-entropy of the trained model on its label (a peer, no responsibility)",
        ),
        strict=True,
    )
)


def predictions(run: Run) -> Arrays:
    """Logits of the trained model on every training and test input: ``train`` (N, C), ``test`` (T, C)."""

    def compute() -> Arrays:
        model = run.model
        out = {}
        with torch.no_grad():
            for split in ("train", "test"):
                x = run.images(split)
                out[split] = torch.cat([model(x[i : i + _BATCH]) for i in range(0, len(x), _BATCH)]).float().numpy()
        return out

    return run.cache.arrays("predictions", compute)


def score_names(run: Run) -> list[str]:
    """The scores this run has: the responsibility ones need the output layer recorded."""
    return list(SCORES) if run.output_params else ["final_loss"]


def score(run: Run, name: str) -> np.ndarray:
    """One score per training example (float64, higher = more suspicious)."""
    if name not in score_names(run):
        raise ValueError(f"unknown score {name!r}; this run has {score_names(run)}")
    params = run.output_params
    compute: dict[str, Callable[[], np.ndarray]] = {
        "label_push": lambda: label_push(run.store, params, labels=run.labels),
        "self_responsibility": lambda: self_responsibility(run.store, params),
        "class_agreement": lambda: class_agreement(run.store, params, labels=run.labels),
        "final_loss": lambda: final_loss(predictions(run)["train"], run.labels),
    }
    return run.cache.arrays(f"score-{name}", lambda: {"score": compute[name]()})["score"]


def explanations(run: Run) -> Arrays:
    """For every test input, the training examples that most support (``pos_*``, highest scores) and oppose
    (``neg_*``, lowest scores, given as their magnitude) its prediction: ids and scores ``(T, EXPLANATION_DEPTH)``."""

    def compute() -> Arrays:
        x = run.images("test")
        k = min(EXPLANATION_DEPTH, run.num_examples)
        explainer = Explainer(run.model, run.store)
        parts: dict[str, list[np.ndarray]] = {key: [] for key in ("pos_ids", "pos_scores", "neg_ids", "neg_scores")}
        for i in bar(range(0, len(x), _EXPLAIN_BATCH), desc="explaining test inputs", unit="batch"):
            with quiet():  # one bar over the test set, not one per batch under it
                scores = torch.from_numpy(explainer.attribute(x[i : i + _EXPLAIN_BATCH]))
            for key, values in (("pos", scores), ("neg", -scores)):
                top = torch.topk(values, k, dim=1)  # the strongest supporters, or opponents of the prediction
                parts[f"{key}_ids"].append(top.indices.numpy())
                parts[f"{key}_scores"].append(top.values.numpy())
        return {key: np.concatenate(v) for key, v in parts.items()}

    return run.cache.arrays("explanations-contribution", compute)


def classes(run: Run) -> Arrays:
    """``unit`` (N, C): each example's |R| summed over the weights of each output unit; ``matrix`` (C, C): those
    sums added up per training class, rows = training classes, columns = output units (the inter-class matrix)."""
    name = run.output_weight
    if name is None:
        raise ValueError(f"{run.name}: the output layer was not recorded")

    def compute() -> Arrays:
        c = run.num_classes
        per_unit = run.store.param(name).units // c
        unit = np.zeros((run.num_examples, c))
        for cols, block in run.store.iter_blocks(name, "abs"):
            first, last = cols.start // per_unit, (cols.stop - 1) // per_unit
            for u in range(first, last + 1):
                lo, hi = max(cols.start, u * per_unit), min(cols.stop, (u + 1) * per_unit)
                unit[:, u] += block[:, lo - cols.start : hi - cols.start].sum(axis=1, dtype=np.float64)
        matrix = np.zeros((c, c))
        np.add.at(matrix, run.labels, unit)
        return {"unit": unit, "matrix": matrix}

    return run.cache.arrays("classes", compute)


def epochs(run: Run) -> Arrays:
    """Per epoch of training: ``abs`` (N, E) total |R| over the output layer and ``push`` (N, E) label push."""

    def compute() -> Arrays:
        store = run.store
        recorded = np.unique(store.meta()[:, 1])
        params = run.output_params
        abs_r = np.zeros((run.num_examples, len(recorded)))
        push = np.zeros((run.num_examples, len(recorded)))
        for j, e in enumerate(recorded):
            window = store.epoch_steps(int(e))
            abs_r[:, j] = self_responsibility(store, params, steps=window)
            push[:, j] = label_push(store, params, labels=run.labels, steps=window)
        return {"epochs": recorded.astype(np.int64), "abs": abs_r, "push": push}

    if not run.output_params:
        raise ValueError(f"{run.name}: the output layer was not recorded")
    return run.cache.arrays("epochs", compute)
