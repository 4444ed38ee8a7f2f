"""How the paper's experiments explain test inputs: the most responsible training examples of the weights
:func:`responsibility.query.explain` chooses (ranked by R, R_pos, R_neg or R_pos − R_neg), and the two
nearest-neighbour explanations the Section 4 evaluator compares them with (the actor's penultimate features)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from responsibility.choices import check_choice
from responsibility.experiments.runs import predict
from responsibility.query import explain, final_layer
from responsibility.store import ResponsibilityStore

__all__ = [
    "EXPLAIN_SIGNS",
    "ExplainSign",
    "nearest_examples",
    "penultimate_features",
    "responsible_examples",
]

ExplainSign = Literal["abs", "pos", "neg", "signed"]
EXPLAIN_SIGNS: tuple[ExplainSign, ...] = get_args(ExplainSign)
_QUERY_SIGN = {"signed": "net"}


def responsible_examples(
    model: nn.Module,
    store: ResponsibilityStore,
    x: torch.Tensor,
    *,
    k: int,
    layers: Sequence[str] | None,
    sign: str = "abs",
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(predicted (n,), example ids (n, k), scores (n, k))`` of the most responsible training examples.

    The weights are chosen by :func:`responsibility.query.explain` (the predicted class's row of the final
    layer); ``sign`` is ``abs``, ``pos``, ``neg`` (passed to ``explain``) or ``signed``: R_pos − R_neg of the
    chosen weights, ranked high to low, ties to the smaller id.
    """
    check_choice("sign", sign, ExplainSign)
    if not 1 <= k <= store.num_examples:
        raise ValueError(f"k must be in [1, {store.num_examples}], got {k}")
    layers = None if layers is None else [str(v) for v in layers]
    predicted, ids, scores = [], [], []
    for i in range(0, len(x), chunk):
        xc = x[i : i + chunk]
        # The paper's rule; "signed" ranks by R_pos - R_neg of the chosen weights.
        ex = explain(model, store, xc, k=k, layers=layers, method="most_activated", sign=_QUERY_SIGN.get(sign, sign))
        predicted.append(ex.predicted)
        ids.append(ex.example_ids)
        scores.append(ex.scores)
    return np.concatenate(predicted), np.concatenate(ids).astype(np.int64), np.concatenate(scores)


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, num_classes: int, batch_size: int = 1024) -> torch.Tensor:
    """The input of the model's final layer (the last ``nn.Linear`` with ``num_classes`` outputs), ``(n, d)``."""
    layer = final_layer(model, num_classes)
    if layer is None:
        raise ValueError(f"the model has no final nn.Linear with {num_classes} outputs")
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _mod, args: captured.append(args[0].detach().flatten(1)))
    try:
        predict(model, x, batch_size)
    finally:
        handle.remove()
    return torch.cat(captured)


def nearest_examples(
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_groups: np.ndarray | None = None,
    key_groups: np.ndarray | None = None,
    chunk: int = 1024,
) -> np.ndarray:
    """For each query row, the index of the nearest key row (Euclidean; ties to the smaller index), ``(n,)``.

    With groups, only keys of the query's own group are candidates (e.g. training examples whose label is the
    actor's predicted class); a query whose group has no key is an error.
    """
    q, kx = queries.flatten(1).double(), keys.flatten(1).double()
    if q.shape[1] != kx.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features, keys {kx.shape[1]}")
    if (query_groups is None) != (key_groups is None):
        raise ValueError("pass both query_groups and key_groups, or neither")
    key_sq = (kx * kx).sum(1)
    out = np.empty(len(q), dtype=np.int64)
    kg = None if key_groups is None else torch.as_tensor(np.asarray(key_groups))
    for i in range(0, len(q), chunk):
        qc = q[i : i + chunk]
        d = key_sq[None, :] - 2 * qc @ kx.T  # |q|² is constant per row: it does not change the argmin
        if kg is not None:
            qg = torch.as_tensor(np.asarray(query_groups)[i : i + chunk])
            allowed = qg[:, None] == kg[None, :]
            if not bool(allowed.any(1).all()):
                raise ValueError("a query's group has no key to be its neighbour")
            d = torch.where(allowed, d, torch.full_like(d, float("inf")))
        out[i : i + chunk] = d.argmin(1).numpy()  # argmin returns the first minimum: the smaller index
    return out
