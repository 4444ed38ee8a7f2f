"""What :func:`responsibility.query.explain` returns: one :class:`InputExplanation` per input, and exports."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Explanation", "InputExplanation"]

_CSV_FIELDS = ["input", "predicted", "target", "rank", "example", "label", "score", "weights", "source", "true_label"]


@dataclass
class InputExplanation:
    """The explanation of one input: ``weights`` are the chosen entries (name, index, activation) under the
    ``most_activated`` method, empty under ``contribution`` (every weight of the layers takes part)."""

    input: int
    predicted: int
    target: int | None
    weights: list[tuple[str, tuple[int, ...], float]]
    example_ids: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None = None
    source: int | None = None  # the input's index in its original dataset, when known
    true_label: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "source": self.source,
            "true_label": self.true_label,
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
    method: str = "contribution"

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> InputExplanation:
        return self.items[i]

    def __iter__(self) -> Iterator[InputExplanation]:
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
        rows = [e.labels for e in self.items]
        if not rows or any(r is None for r in rows):
            return None
        return np.stack([r for r in rows if r is not None])

    def to_records(self) -> list[dict[str, Any]]:
        """One flat row per (input, rank): for tables and CSV."""
        rows = []
        for e in self.items:
            chosen = ";".join(f"{n}[{','.join(map(str, i))}]={a:.6g}" for n, i, a in e.weights)
            for rank, (ex, score) in enumerate(zip(e.example_ids, e.scores, strict=True), start=1):
                rows.append(
                    {
                        "input": e.input,
                        "source": e.source,
                        "true_label": e.true_label,
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
            "method": self.method,
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
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
            writer.writeheader()
            writer.writerows(self.to_records())
