"""Curations: the changes a user decides on for a run's training data, kept as a versioned, human-readable JSON file.

A curation relabels, removes or reweights training examples and keeps notes and tags on them. It is a log: each
change says what was done to which example ids, when and why, and the effect (:class:`CurationState`) is what
replaying the log gives, so the file is also the record of every decision. :meth:`Curation.undo` takes the last
change back; it moves to ``undone`` with the time of the undo, so nothing is forgotten.

The file is read with :func:`json.loads` and validated field by field (schema, ids and labels in range, finite
positive weights); it is never executed or unpickled. It is written atomically (a temporary file, then
``os.replace``). The dataset and the responsibility store are never modified: a curation takes effect when a run
is trained with it (``python scripts/train.py curation=PATH``). Example ids stay those of the original dataset,
so the stores and predictions of the two runs line up.

What each action means for training:

- ``relabel``: the example is trained with the new label.
- ``remove``: the example is left out: the sampler skips it, so its id stays valid and it is credited with nothing.
  ``restore`` brings it back.
- ``reweight``: the example's loss is multiplied by ``factor`` (finite, positive; 1 is the default). A factor of 0
  is refused: use ``remove``. A zero weight would keep the example in its batches, changing their make-up, and
  under uniform attribution it would still be credited with the steps it sat in.
- ``note``, ``tag``, ``untag``: for people; no effect on training. An empty note clears it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from responsibility.choices import CurationAction, check_choice
from responsibility.errors import CurationError

__all__ = [
    "APPLIED_FILE_NAME",
    "FILE_NAME",
    "FORMAT",
    "VERSION",
    "Change",
    "Curation",
    "CurationState",
    "labels_sha256",
]

FORMAT = "responsibility-curation"
VERSION = 1
# In a run directory: the working curation (edited by the explorer, applied by the next retrain), and the snapshot
# of the curation the run itself was trained with.
FILE_NAME = "curation.json"
APPLIED_FILE_NAME = "applied_curation.json"
MAX_REASON = 2_000
MAX_NOTE = 10_000
MAX_TAG = 64
# The value field of each action, and its JSON name (remove and restore have none).
_VALUE_KEY = {"relabel": "label", "reweight": "factor", "note": "text", "tag": "tag", "untag": "tag"}
_COMMON_KEYS = {"time", "action", "ids", "reason"}
_TOP_KEYS = {"format", "version", "num_examples", "num_classes", "class_names", "labels_sha256", "changes", "undone"}


def labels_sha256(labels: Sequence[int] | np.ndarray) -> str:
    """Digest of a dataset's original training labels: a curation applies only to the dataset it was made for."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(labels), dtype=np.int64).tobytes()).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Change:
    """One recorded change: ``action`` on example ``ids``, with its value (``label``, ``factor`` or ``text``)."""

    action: CurationAction
    ids: tuple[int, ...]
    time: str
    reason: str = ""
    label: int | None = None
    factor: float | None = None
    text: str | None = None  # a note's text, or a tag
    undone_at: str | None = None

    def to_json(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"time": self.time, "action": self.action, "ids": list(self.ids)}
        if self.action == "relabel":
            doc["label"] = self.label
            if class_names is not None and self.label is not None:
                doc["label_name"] = class_names[self.label]  # for people reading the file; checked on load
        elif self.action == "reweight":
            doc["factor"] = self.factor
        elif self.action in _VALUE_KEY:
            doc[_VALUE_KEY[self.action]] = self.text
        doc["reason"] = self.reason
        if self.undone_at is not None:
            doc["undone_at"] = self.undone_at
        return doc


@dataclass
class CurationState:
    """The effect of a curation: new labels, removed ids, loss weights (≠ 1), notes and tags, by example id."""

    labels: dict[int, int] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)
    weights: dict[int, float] = field(default_factory=dict)
    notes: dict[int, str] = field(default_factory=dict)
    tags: dict[int, set[str]] = field(default_factory=dict)

    def apply(self, change: Change) -> None:
        for i in change.ids:
            if change.action == "relabel":
                self.labels[i] = int(change.label)  # type: ignore[arg-type]
            elif change.action == "remove":
                self.removed.add(i)
            elif change.action == "restore":
                self.removed.discard(i)
            elif change.action == "reweight":
                if change.factor == 1.0:
                    self.weights.pop(i, None)
                else:
                    self.weights[i] = float(change.factor)  # type: ignore[arg-type]
            elif change.action == "note":
                if change.text:
                    self.notes[i] = change.text
                else:
                    self.notes.pop(i, None)
            elif change.action == "tag":
                self.tags.setdefault(i, set()).add(str(change.text))
            else:  # untag
                self.tags.get(i, set()).discard(str(change.text))
                if not self.tags.get(i, True):
                    del self.tags[i]

    def of(self, i: int) -> dict[str, Any]:
        """Everything the curation says about example ``i`` (JSON-ready)."""
        return {
            "label": self.labels.get(i),
            "removed": i in self.removed,
            "weight": self.weights.get(i, 1.0),
            "note": self.notes.get(i, ""),
            "tags": sorted(self.tags.get(i, ())),
        }


class Curation:
    """A curation of one dataset's training examples; see the module docstring. Save with :meth:`save`."""

    def __init__(
        self,
        num_examples: int,
        num_classes: int,
        labels_digest: str,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if type(num_examples) is not int or num_examples < 1:
            raise CurationError(f"num_examples must be a positive integer, got {num_examples!r}")
        if type(num_classes) is not int or num_classes < 1:
            raise CurationError(f"num_classes must be a positive integer, got {num_classes!r}")
        if not isinstance(labels_digest, str) or len(labels_digest) != 64:
            raise CurationError(f"labels_sha256 must be a 64-character hex digest, got {labels_digest!r}")
        if class_names is not None:
            names = list(class_names)
            if len(names) != num_classes or not all(isinstance(n, str) for n in names):
                raise CurationError(f"class_names must be {num_classes} strings, got {names!r}")
        self.num_examples = num_examples
        self.num_classes = num_classes
        self.labels_digest = labels_digest
        self.class_names = None if class_names is None else list(class_names)
        self.changes: list[Change] = []
        self.undone: list[Change] = []
        self._state: CurationState | None = None

    @classmethod
    def for_labels(
        cls, labels: Sequence[int] | np.ndarray, num_classes: int, class_names: Sequence[str] | None = None
    ) -> Curation:
        """An empty curation for a training set with these (original) labels."""
        labels = np.asarray(labels)
        return cls(int(len(labels)), int(num_classes), labels_sha256(labels), class_names)

    # ------------------------------------------------------------------ changes
    def record(
        self,
        action: str,
        ids: Iterable[int],
        *,
        label: int | None = None,
        factor: float | None = None,
        text: str | None = None,
        reason: str = "",
    ) -> Change:
        """Validate and append one change; returns it. ``ids`` may repeat (kept once, in first-seen order)."""
        check_choice("action", action, CurationAction, CurationError)
        unique = list(dict.fromkeys(_as_int(i, "ids") for i in ids))
        doc: dict[str, Any] = {"time": _now(), "action": action, "ids": unique, "reason": reason}
        key = _VALUE_KEY.get(action)
        if key is not None:
            doc[key] = label if key == "label" else factor if key == "factor" else text
        change = self._parse_change(doc, "new change")
        self.changes.append(change)
        self._state = None
        return change

    def undo(self) -> Change:
        """Take the last change back (it is kept in :attr:`undone` with the time of the undo)."""
        if not self.changes:
            raise CurationError("nothing to undo: the curation has no changes")
        change = self.changes.pop()
        undone = replace(change, undone_at=_now())
        self.undone.append(undone)
        self._state = None
        return undone

    @property
    def state(self) -> CurationState:
        if self._state is None:
            state = CurationState()
            for change in self.changes:
                state.apply(change)
            self._state = state
        return self._state

    # ------------------------------------------------------------------ applying to a dataset
    def check_labels(self, labels: Sequence[int] | np.ndarray) -> None:
        """Raise :class:`CurationError` unless ``labels`` are the original labels this curation was made for."""
        labels = np.asarray(labels)
        if len(labels) != self.num_examples:
            raise CurationError(
                f"the curation is for {self.num_examples} training examples, the dataset has {len(labels)}"
            )
        if labels_sha256(labels) != self.labels_digest:
            raise CurationError(
                "the curation was made for another dataset: the training labels differ (digest mismatch); a "
                "curation applies to the run's original data config (same data, subset, seed and label noise)"
            )

    def labels(self, original: Sequence[int] | np.ndarray) -> np.ndarray:
        """The training labels after relabelling (int64 copy of ``original``, which must pass check_labels)."""
        self.check_labels(original)
        out = np.asarray(original).astype(np.int64)  # a copy, also of int64 input; tensors go in as arrays
        for i, label in self.state.labels.items():
            out[i] = label
        return out

    def kept_ids(self) -> np.ndarray:
        """Ids of the examples that are trained on (all but the removed ones), ascending."""
        keep = np.ones(self.num_examples, dtype=bool)
        keep[list(self.state.removed)] = False
        return np.flatnonzero(keep).astype(np.int64)

    def loss_weights(self) -> np.ndarray | None:
        """Per-example loss factors (float32, 1 where unchanged), or None when no example is reweighted."""
        if not self.state.weights:
            return None
        w = np.ones(self.num_examples, dtype=np.float32)
        for i, factor in self.state.weights.items():
            w[i] = factor
        return w

    # ------------------------------------------------------------------ the file
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "num_examples": self.num_examples,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "labels_sha256": self.labels_digest,
            "changes": [c.to_json(self.class_names) for c in self.changes],
            "undone": [c.to_json(self.class_names) for c in self.undone],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the file atomically: readers see the old or the new version, never a part."""
        path = Path(path)
        text = json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Curation:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CurationError(f"no curation file at {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CurationError(f"cannot read curation file {path}: {exc}") from exc
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CurationError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_json(doc, str(path))

    @classmethod
    def from_json(cls, doc: Any, source: str = "curation") -> Curation:
        """Validate a parsed curation document; every problem is a :class:`CurationError` naming the field."""
        if not isinstance(doc, dict):
            raise CurationError(f"{source}: a curation file holds a JSON object, got {type(doc).__name__}")
        if doc.get("format") != FORMAT:
            raise CurationError(f"{source}: not a curation file (format {doc.get('format')!r}, expected {FORMAT!r})")
        version = doc.get("version")
        if type(version) is not int or not 1 <= version <= VERSION:
            raise CurationError(
                f"{source}: curation version {version!r} is not supported (this library reads 1..{VERSION})"
            )
        unknown = set(doc) - _TOP_KEYS
        missing = _TOP_KEYS - set(doc)
        if unknown or missing:
            raise CurationError(f"{source}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
        try:
            cur = cls(doc["num_examples"], doc["num_classes"], doc["labels_sha256"], doc["class_names"])
        except CurationError as exc:
            raise CurationError(f"{source}: {exc}") from None
        for key in ("changes", "undone"):
            if not isinstance(doc[key], list):
                raise CurationError(f"{source}: {key} must be a list")
        cur.changes = [cur._parse_change(c, f"{source}: changes[{j}]") for j, c in enumerate(doc["changes"])]
        cur.undone = [cur._parse_change(c, f"{source}: undone[{j}]", True) for j, c in enumerate(doc["undone"])]
        return cur

    def _parse_change(self, doc: Any, where: str, undone: bool = False) -> Change:
        if not isinstance(doc, dict):
            raise CurationError(f"{where}: a change is a JSON object")
        action: CurationAction = check_choice(f"{where}: action", doc.get("action"), CurationAction, CurationError)
        key = _VALUE_KEY.get(action)
        allowed = _COMMON_KEYS | ({key} if key else set()) | ({"label_name"} if action == "relabel" else set())
        allowed |= {"undone_at"} if undone else set()
        required = allowed - {"label_name", "reason"}
        if set(doc) - allowed or required - set(doc):
            raise CurationError(
                f"{where}: a {action!r} change has fields {sorted(required)} (and optionally "
                f"{sorted(allowed - required)}); got {sorted(doc)}"
            )
        ids = doc["ids"]
        if not isinstance(ids, list) or not ids:
            raise CurationError(f"{where}: ids must be a non-empty list of example ids")
        ids = [_as_int(i, f"{where}: ids") for i in ids]
        bad = [i for i in ids if not 0 <= i < self.num_examples]
        if bad:
            raise CurationError(f"{where}: example ids {bad[:5]} outside [0, {self.num_examples})")
        if len(set(ids)) != len(ids):
            raise CurationError(f"{where}: ids repeat")
        reason = doc.get("reason", "")
        _check_text(reason, f"{where}: reason", MAX_REASON)
        times = [_check_time(doc["time"], f"{where}: time")]
        if undone:
            times.append(_check_time(doc["undone_at"], f"{where}: undone_at"))
        change = Change(action, tuple(ids), times[0], reason, undone_at=times[1] if undone else None)
        value = doc.get(key) if key else None
        if action == "relabel":
            label = _as_int(value, f"{where}: label")
            if not 0 <= label < self.num_classes:
                raise CurationError(f"{where}: label {label} outside [0, {self.num_classes})")
            if "label_name" in doc and (self.class_names is None or doc["label_name"] != self.class_names[label]):
                raise CurationError(f"{where}: label_name {doc['label_name']!r} does not name label {label}")
            return replace(change, label=label)
        if action == "reweight":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise CurationError(
                    f"{where}: factor must be a finite positive number, got {value!r} (to drop an example, remove it)"
                )
            return replace(change, factor=float(value))
        if action == "note":
            return replace(change, text=_check_text(value, f"{where}: text", MAX_NOTE))
        if key == "tag":
            tag = _check_text(value, f"{where}: tag", MAX_TAG)
            if not tag.strip():
                raise CurationError(f"{where}: tag must not be empty")
            return replace(change, text=tag)
        return change


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise CurationError(f"{what}: expected integers, got {value!r}")
    return int(value)


def _check_text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise CurationError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise CurationError(f"{what} is {len(value)} characters long; at most {limit}")
    return value


def _check_time(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise CurationError(f"{what} must be an ISO 8601 time string, got {value!r}")
    try:
        _dt.datetime.fromisoformat(value)
    except ValueError:
        raise CurationError(f"{what} must be an ISO 8601 time string, got {value!r}") from None
    return value
