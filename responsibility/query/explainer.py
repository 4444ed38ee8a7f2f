"""Query side: which training examples are most responsible for a model's behaviour on a test input.

Following Khadivpour & Guzdial, a test input is explained through the weight(s) it activates most (see
:mod:`responsibility.query.activations`); the training examples with the largest responsibility R for those weights
are the explanation.

Selection, per input, among the eligible entries (weights, or units for neuron-granularity parameters) of the
selected layers:

- Activations are compared **raw** across layers (the paper's "maximally activated weight in the network"):
  no per-layer normalisation, so layers with large inputs or weights win more often. Pass ``layers=`` to
  restrict the choice to one layer, as the paper does for per-layer explanations.
- ``target="predicted"``: in the final layer (the last ``nn.Linear`` whose ``out_features`` equals the number
  of logits) only the row of the predicted class (weights, and that class's bias entry) is eligible; an int
  picks that class's row; ``None`` leaves every unit eligible. Other layers are never restricted.
- ``top_weights=T`` picks the T most activated eligible entries. ``outliers=z`` keeps only entries whose robust
  z-score within their parameter, ``(a - median) / (1.4826 · MAD)``, exceeds ``z`` (MAD = median absolute
  deviation of the eligible entries; when MAD is 0, as with mostly-zero ReLU inputs, ``1.2533 · mean absolute
  deviation`` is the scale; with both 0 nothing is an outlier). At most ``top_weights`` of them are kept
  (default :data:`MAX_OUTLIERS`), the most activated first; an input with no outlier falls back to its single
  most activated entry.

Scoring: with chosen entries ``j`` of activations ``a_j``, ``score(m) = Σ_j (a_j / Σ_l a_l) · R_j[m]``, an
activation-weighted mean of R (``sign`` picks R, R_pos or R_neg). With one entry the score is R itself. The
``k`` examples of largest score are returned, ties to the smaller example id.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from responsibility.choices import ActivationRule, Sign, check_choice
from responsibility.errors import LayerSelectionError, StoreMismatchError
from responsibility.kernels import topk_desc
from responsibility.query.activations import activation_modules, compute_activations
from responsibility.recording.selection import matches
from responsibility.store import ResponsibilityStore

__all__ = [
    "MAX_OUTLIERS",
    "Explainer",
    "Explanation",
    "InputExplanation",
    "explain",
    "final_layer",
    "robust_z",
    "top_examples",
]

MAX_OUTLIERS = 32
# Load a parameter's whole top-k index into memory (for repeated queries) up to this size.
_INDEX_CACHE_BYTES = 256 << 20


# ---------------------------------------------------------------------------------------------------- results
@dataclass
class InputExplanation:
    """The explanation of one input."""

    input: int
    predicted: int
    target: int | None
    weights: list[tuple[str, tuple[int, ...], float]]
    example_ids: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "predicted": self.predicted,
            "target": self.target,
            "weights": [{"parameter": n, "index": list(i), "activation": a} for n, i, a in self.weights],
            "example_ids": [int(i) for i in self.example_ids],
            "scores": [float(s) for s in self.scores],
            "labels": None if self.labels is None else [int(v) for v in self.labels],
        }


@dataclass
class Explanation:
    """Explanations of a batch of inputs, in input order; iterate or index for :class:`InputExplanation`."""

    items: list[InputExplanation]
    k: int
    sign: str
    rule: str
    layers: list[str]
    unsupported: list[str] = field(default_factory=list)
    logits: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> InputExplanation:
        return self.items[i]

    def __iter__(self):
        return iter(self.items)

    @property
    def predicted(self) -> np.ndarray:
        return np.array([e.predicted for e in self.items], dtype=np.int64)

    @property
    def example_ids(self) -> np.ndarray:
        """``(B, k)`` example ids, most responsible first."""
        return np.stack([e.example_ids for e in self.items]) if self.items else np.zeros((0, self.k), np.int64)

    @property
    def scores(self) -> np.ndarray:
        return np.stack([e.scores for e in self.items]) if self.items else np.zeros((0, self.k), np.float32)

    @property
    def labels(self) -> np.ndarray | None:
        """``(B, k)`` training labels of the example ids, when the store has labels."""
        if not self.items or self.items[0].labels is None:
            return None
        return np.stack([e.labels for e in self.items])

    def to_records(self) -> list[dict[str, Any]]:
        """One flat row per (input, rank): for tables and CSV."""
        rows = []
        for e in self.items:
            chosen = ";".join(f"{n}[{','.join(map(str, i))}]={a:.6g}" for n, i, a in e.weights)
            for rank, (ex, score) in enumerate(zip(e.example_ids, e.scores, strict=True), start=1):
                rows.append(
                    {
                        "input": e.input,
                        "predicted": e.predicted,
                        "target": e.target,
                        "rank": rank,
                        "example": int(ex),
                        "label": None if e.labels is None else int(e.labels[rank - 1]),
                        "score": float(score),
                        "weights": chosen,
                    }
                )
        return rows

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text of the whole explanation (also written to ``path`` if given)."""
        doc = {
            "k": self.k,
            "sign": self.sign,
            "rule": self.rule,
            "layers": self.layers,
            "unsupported": self.unsupported,
            "inputs": [e.to_dict() for e in self.items],
        }
        text = json.dumps(doc, indent=2)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_csv(self, path: str | Path) -> None:
        """Write :meth:`to_records` as CSV."""
        fields = ["input", "predicted", "target", "rank", "example", "label", "score", "weights"]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.to_records())


# ---------------------------------------------------------------------------------------------------- helpers
def final_layer(model: nn.Module, num_outputs: int) -> nn.Linear | None:
    """The last ``nn.Linear`` (in module order) with ``out_features == num_outputs``: the class-unit layer."""
    last = None
    for mod in model.modules():
        if isinstance(mod, nn.Linear) and mod.out_features == num_outputs:
            last = mod
    return last


def robust_z(a: torch.Tensor) -> torch.Tensor:
    """Row-wise robust z-scores of a ``(B, n)`` tensor; see the module docstring for the scale."""
    med = a.median(dim=1, keepdim=True).values
    dev = (a - med).abs()
    mad = dev.median(dim=1, keepdim=True).values * 1.4826
    mean_ad = dev.mean(dim=1, keepdim=True) * 1.2533
    scale = torch.where(mad > 0, mad, mean_ad)
    z = (a - med) / scale.clamp_min(torch.finfo(a.dtype).tiny)
    return torch.where(scale > 0, z, torch.zeros_like(z))


def top_examples(
    store: ResponsibilityStore, name: str, columns: Sequence[int] | np.ndarray, k: int, sign: str = "abs"
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most responsible example ids of some columns of a parameter: ``(k, len(columns))`` each.

    Read from the top-k index (just those columns) when the parameter is folded up to date and ``k`` is within
    the index depth; else from R of those columns, with the same tie rule (smaller id first).
    """
    cols = np.asarray(columns, dtype=np.int64)
    if _index_usable(store, name, k):
        uniq, inverse = np.unique(cols, return_inverse=True)
        index = store.topk_index(name, sign, uniq)
        if index is not None:
            return index[0][:k, inverse], index[1][:k, inverse]
    r = store.read(name, sign, weights=cols)
    ids, vals = topk_desc(torch.from_numpy(np.ascontiguousarray(r, dtype=np.float32)), k)
    return ids.numpy(), vals.numpy()


def _index_usable(store: ResponsibilityStore, name: str, k: int) -> bool:
    return store.folded_steps(name) == store.steps > 0 and k <= min(store.layout.topk, store.num_examples)


@dataclass
class _Candidates:
    """Eligible entries of one parameter for a batch: activations ``(B, n)`` and their flat R columns."""

    name: str
    act: torch.Tensor
    columns: torch.Tensor  # (B, n) int64 flat indices into the parameter's R columns


# ---------------------------------------------------------------------------------------------------- explainer
class Explainer:
    """Answers repeated queries against one model and store, caching |W| and the top-k index in memory.

    The model must be the module the callback saw (names as in the store), e.g. the LightningModule.
    """

    def __init__(self, model: nn.Module, store: ResponsibilityStore) -> None:
        self.model = model
        self.store = store
        self._check_model()
        self._rules = activation_modules(model)
        self._abs_w: dict[str, tuple[int, torch.Tensor]] = {}
        self._index: dict[tuple[str, str], tuple[int, np.ndarray, np.ndarray]] = {}
        self._labels: tuple[np.ndarray | None] | None = None

    def _check_model(self) -> None:
        params = dict(self.model.named_parameters())
        problems = []
        for p in self.store.spec.params:
            if p.name not in params:
                problems.append(f"{p.name} is missing")
            elif tuple(params[p.name].shape) != p.shape:
                problems.append(f"{p.name} has shape {tuple(params[p.name].shape)}, store {p.shape}")
        if problems:
            raise StoreMismatchError(
                f"the model does not match the store {self.store.path} (was it recorded from another model?): "
                + "; ".join(problems[:5])
                + ("; ..." if len(problems) > 5 else "")
            )

    def resolve_layers(self, layers: str | Sequence[str] | None) -> tuple[list[str], list[str]]:
        """(selected parameters with an activation rule, selected ones without) in store order."""
        names = self.store.parameters
        if layers is None:
            chosen = names
        else:
            patterns = [layers] if isinstance(layers, str) else list(layers)
            if not patterns:
                raise LayerSelectionError("layers=[] selects nothing; pass None for all parameters")
            unknown = [pat for pat in patterns if not any(matches(n, pat) or fnmatchcase(n, pat) for n in names)]
            if unknown:
                raise LayerSelectionError(f"layer pattern(s) {unknown} match no parameter of the store; it has {names}")
            chosen = [n for n in names if any(matches(n, pat) for pat in patterns)]
        supported = [n for n in chosen if n in self._rules]
        unsupported = [n for n in chosen if n not in self._rules]
        if not supported:
            raise LayerSelectionError(
                f"no selected parameter has an activation rule (Linear, Conv1d, Conv2d); selected: {chosen}"
            )
        return supported, unsupported

    def _abs_weights(self, names: list[str]) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        out = {}
        for n in names:
            p = params[n]
            cached = self._abs_w.get(n)
            # An in-place update (training, load_state_dict) bumps the version counter and invalidates |W|.
            if cached is None or cached[0] != p._version:
                cached = (p._version, p.detach().abs())
                self._abs_w[n] = cached
            out[n] = cached[1]
        return out

    def _lookup_top(self, name: str, columns: np.ndarray, k: int, sign: str) -> tuple[np.ndarray, np.ndarray]:
        store = self.store
        p = store.param(name)
        if _index_usable(store, name, k) and p.units * store.layout.topk * 12 <= _INDEX_CACHE_BYTES:
            key = (name, sign)
            cached = self._index.get(key)
            if cached is None or cached[0] != store.generation:
                index = store.topk_index(name, sign)
                if index is None:
                    return top_examples(store, name, columns, k, sign)
                cached = self._index[key] = (store.generation, *index)
            return cached[1][:k, columns], cached[2][:k, columns]
        return top_examples(store, name, columns, k, sign)

    def explain(
        self,
        inputs: torch.Tensor | np.ndarray,
        *,
        k: int = 10,
        layers: str | Sequence[str] | None = None,
        target: str | int | None = "predicted",
        top_weights: int | None = None,
        sign: str = "abs",
        outliers: float | None = None,
        rule: str = "sum",
        batch_size: int = 256,
    ) -> Explanation:
        """Explain a batch of inputs; see :func:`explain`."""
        store = self.store
        check_choice("sign", sign, Sign)
        check_choice("rule", rule, ActivationRule)
        if not 1 <= k <= store.num_examples:
            raise ValueError(f"k must be in [1, {store.num_examples}], got {k}")
        if top_weights is not None and top_weights < 1:
            raise ValueError(f"top_weights must be >= 1, got {top_weights}")
        if outliers is not None and not outliers > 0:
            raise ValueError(f"outliers must be a positive z-score threshold, got {outliers}")
        if not (target is None or target == "predicted" or (isinstance(target, int) and not isinstance(target, bool))):
            raise ValueError(f"target must be 'predicted', None or a class index, got {target!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x = torch.as_tensor(inputs)
        if not x.is_floating_point():
            x = x.float()
        names, unsupported = self.resolve_layers(layers)
        cap = top_weights if top_weights is not None else (MAX_OUTLIERS if outliers is not None else 1)

        was_training = self.model.training
        self.model.eval()
        try:
            chunks = [
                self._select(x[i : i + batch_size], names, target, cap, outliers, rule)
                for i in range(0, len(x), batch_size)
            ]
        finally:
            self.model.train(was_training)
        logits = torch.cat([c[0] for c in chunks]) if chunks else torch.zeros(0)
        chosen = [sel for c in chunks for sel in c[1]]
        ids, scores = self._score(chosen, k, sign)
        if self._labels is None:
            self._labels = (store.labels,)  # labels are fixed when a store is created: read them once
        labels = self._labels[0]
        targets = [c[2] for c in chunks]
        target_rows = [t for ts in targets for t in ts]
        items = []
        for b, sel in enumerate(chosen):
            weights = [
                (n, tuple(int(i) for i in np.unravel_index(col, store.param(n).r_shape)), a) for n, col, a in sel
            ]
            items.append(
                InputExplanation(
                    input=b,
                    predicted=int(logits[b].argmax()) if logits.dim() == 2 else -1,
                    target=target_rows[b],
                    weights=weights,
                    example_ids=ids[b],
                    scores=scores[b],
                    labels=None if labels is None else labels[ids[b]],
                )
            )
        return Explanation(
            items=items,
            k=k,
            sign=sign,
            rule=rule,
            layers=names,
            unsupported=unsupported,
            logits=logits.numpy() if logits.numel() else None,
        )

    def _select(
        self, x: torch.Tensor, names: list[str], target: str | int | None, cap: int, outliers: float | None, rule: str
    ) -> tuple[torch.Tensor, list[list[tuple[str, int, float]]], list[int | None]]:
        """Forward one chunk and choose each input's entries: (logits, [(name, column, activation)], targets)."""
        store = self.store
        gran = {n: store.param(n).granularity for n in names}
        acts = compute_activations(
            self.model, x, names, granularity=gran, rule=rule, abs_weights=self._abs_weights(names)
        )
        out = acts.output if isinstance(acts.output, torch.Tensor) else acts.output[0]
        out = out.detach()
        b = len(x)
        rows: torch.Tensor | None = None
        final = None
        if target is not None and out.dim() == 2:
            final = final_layer(self.model, out.shape[1])
            if target == "predicted":
                rows = out.argmax(dim=1)
            else:
                if not 0 <= int(target) < out.shape[1]:
                    raise ValueError(f"target class {target} outside [0, {out.shape[1]})")
                rows = torch.full((b,), int(target), dtype=torch.int64)
        elif target is not None:
            raise ValueError(f"target={target!r} needs (batch, classes) logits; the model returned {tuple(out.shape)}")

        cands = []
        for n in names:
            a = acts.values[n].reshape(b, -1)
            mod, kind = self._rules[n]
            if final is not None and mod is final and rows is not None:
                # Only the target class's unit is eligible: its row of weights, or its own bias/unit entry.
                per_unit = a.shape[1] // final.out_features
                base = rows.unsqueeze(1) * per_unit
                cols = base + torch.arange(per_unit).unsqueeze(0)
                a = a.gather(1, cols)
            else:
                cols = torch.arange(a.shape[1]).unsqueeze(0).expand(b, -1)
            cands.append(_Candidates(n, a.float(), cols))

        take = [min(cap, c.act.shape[1]) for c in cands]
        acts_top, cols_top, layer_top = [], [], []
        for li, (c, t) in enumerate(zip(cands, take, strict=True)):
            v, j = c.act.topk(t, dim=1)
            if outliers is not None:
                z = robust_z(c.act).gather(1, j)
                v = torch.where(z > outliers, v, torch.full_like(v, -1.0))
            acts_top.append(v)
            cols_top.append(c.columns.gather(1, j))
            layer_top.append(torch.full_like(j, li))
        allv, allc, alll = torch.cat(acts_top, 1), torch.cat(cols_top, 1), torch.cat(layer_top, 1)
        # Stable sort keeps store (layer) order among equal activations, so ties resolve the same way always.
        order = torch.sort(allv, dim=1, descending=True, stable=True).indices[:, :cap]
        v, c, li = allv.gather(1, order), allc.gather(1, order), alll.gather(1, order)
        if outliers is not None:
            # No outlier anywhere: fall back to the single most activated entry.
            none = (v[:, 0] < 0).nonzero().flatten().tolist()
            if none:
                fb_v, fb_c, fb_l = self._best(cands, none)
                v[none, 0], c[none, 0], li[none, 0] = fb_v, fb_c, fb_l
        v_l, c_l, l_l = v.tolist(), c.tolist(), li.tolist()
        chosen = []
        for i in range(b):
            chosen.append(
                [(cands[lj].name, cj, vj) for vj, cj, lj in zip(v_l[i], c_l[i], l_l[i], strict=True) if vj >= 0]
            )
        targets = [None] * b if rows is None else rows.tolist()
        return out, chosen, targets

    @staticmethod
    def _best(cands: list[_Candidates], inputs: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vals = torch.stack([c.act[inputs].max(dim=1).values for c in cands], 1)
        cols = torch.stack([c.columns[inputs].gather(1, c.act[inputs].argmax(1, keepdim=True))[:, 0] for c in cands], 1)
        best = vals.argmax(dim=1)  # first maximum: earlier layer on ties, like the stable sort
        r = torch.arange(len(inputs))
        return vals[r, best], cols[r, best], best

    def _score(self, chosen: list[list[tuple[str, int, float]]], k: int, sign: str) -> tuple[np.ndarray, np.ndarray]:
        """Top-k examples per input: the top-k index for single entries, weighted R sums otherwise."""
        b = len(chosen)
        ids = np.zeros((b, k), np.int64)
        scores = np.zeros((b, k), np.float32)
        single = [i for i in range(b) if len(chosen[i]) == 1]
        multi = [i for i in range(b) if len(chosen[i]) > 1]
        by_name: dict[str, list[int]] = {}
        for i in single:
            by_name.setdefault(chosen[i][0][0], []).append(i)
        for name, inputs in by_name.items():
            cols = np.array([chosen[i][0][1] for i in inputs], dtype=np.int64)
            uniq, inverse = np.unique(cols, return_inverse=True)
            top_ids, top_vals = self._lookup_top(name, uniq, k, sign)
            ids[inputs] = top_ids[:, inverse].T
            scores[inputs] = top_vals[:, inverse].T
        if multi:
            # Each distinct (parameter, column) is read once for the whole batch.
            keys = sorted({(n, c) for i in multi for n, c, _ in chosen[i]})
            pos = {key: j for j, key in enumerate(keys)}
            r = torch.empty((self.store.num_examples, len(keys)), dtype=torch.float32)
            for name in sorted({n for n, _ in keys}):
                js = [j for j, (n, _) in enumerate(keys) if n == name]
                cols = np.array([keys[j][1] for j in js], dtype=np.int64)
                r[:, js] = torch.from_numpy(self.store.read(name, sign, weights=cols))
            width = max(len(chosen[i]) for i in multi)
            idx = torch.zeros((len(multi), width), dtype=torch.int64)
            coef = torch.zeros((len(multi), width), dtype=torch.float32)
            for row, i in enumerate(multi):
                total = sum(a for _, _, a in chosen[i])
                for t, (n, c, a) in enumerate(chosen[i]):
                    idx[row, t] = pos[(n, c)]
                    coef[row, t] = a / total if total > 0 else 1.0 / len(chosen[i])
            # Term by term in activation order, so an input's score does not depend on the rest of the batch.
            s = torch.zeros((self.store.num_examples, len(multi)), dtype=torch.float32)
            for t in range(width):
                s += r[:, idx[:, t]] * coef[:, t]
            top_i, top_v = topk_desc(s.clamp_min(0), k)
            ids[multi] = top_i.numpy().T
            scores[multi] = top_v.numpy().T
        return ids, scores


def explain(
    model: nn.Module,
    store: ResponsibilityStore,
    inputs: torch.Tensor | np.ndarray,
    *,
    k: int = 10,
    layers: str | Sequence[str] | None = None,
    target: str | int | None = "predicted",
    top_weights: int | None = None,
    sign: str = "abs",
    outliers: float | None = None,
    rule: str = "sum",
    batch_size: int = 256,
) -> Explanation:
    """The ``k`` training examples most responsible for the most activated weight(s) of each input.

    Args:
        model: the module the callback recorded (parameter names as in the store), e.g. the LightningModule.
        store: the responsibility store of its training run.
        inputs: a batch ``(B, ...)`` as the model takes it.
        k: examples per input.
        layers: parameter/module names or glob patterns among the store's parameters; ``None`` = all that have
            an activation rule (others are listed in ``Explanation.unsupported``).
        target: ``"predicted"``, a class index, or ``None``; restricts only the final layer (module docstring).
        top_weights: how many highly activated entries to combine (default 1; with ``outliers``, at most
            :data:`MAX_OUTLIERS`).
        sign: rank by R (``"abs"``), R_pos or R_neg.
        outliers: robust z-score threshold selecting unusually activated entries within their parameter.
        rule: ``"sum"`` or ``"max"`` aggregation of convolution terms over positions.
        batch_size: inputs per forward pass (bounds the memory of per-weight activations).
    """
    return Explainer(model, store).explain(
        inputs,
        k=k,
        layers=layers,
        target=target,
        top_weights=top_weights,
        sign=sign,
        outliers=outliers,
        rule=rule,
        batch_size=batch_size,
    )
