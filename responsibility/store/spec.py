"""What a store records: the tracked parameters and the recording settings that define R.

Two recordings can share a store only if their specs are equal; :meth:`RecordingSpec.differences` says why not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from responsibility.choices import (
    Attribution,
    BatchShare,
    ExampleForm,
    Granularity,
    ShareRule,
    check_choice,
)


@dataclass(frozen=True)
class ParamSpec:
    """One tracked parameter.

    ``granularity="weight"`` keeps one R column per weight; ``"neuron"`` one per output unit (dim 0), the sum of
    the unit's incoming |Δw| (positive and negative parts summed separately). ``example_form`` says how a
    parameter recorded per example journals each example's values (None: recorded uniformly).
    """

    name: str
    shape: tuple[int, ...]
    granularity: Granularity = "weight"
    example_form: ExampleForm | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def units(self) -> int:
        """Number of R columns for this parameter."""
        if self.granularity == "weight":
            return self.numel
        return self.shape[0] if self.shape else 1

    @property
    def r_shape(self) -> tuple[int, ...]:
        """Shape of one example's R for this parameter (``read`` returns ``(N, *r_shape)``)."""
        return self.shape if self.granularity == "weight" else (self.units,)

    @property
    def example_width(self) -> int:
        """Values journaled per example: the two factors, the gradient, or the share per unit by sign."""
        if self.example_form is None:
            return 0
        if self.example_form == "outer":
            return self.shape[0] + self.shape[1]
        if self.example_form == "units":
            return 2 * self.units
        return self.numel

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "granularity": self.granularity}
        if self.example_form is not None:
            out["example_form"] = self.example_form
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ParamSpec:
        return cls(
            name=str(d["name"]),
            shape=tuple(int(s) for s in d["shape"]),
            granularity=d["granularity"],
            example_form=d.get("example_form"),
        )


@dataclass(frozen=True)
class RecordingSpec:
    """The model/dataset/settings fingerprint a store is bound to."""

    params: tuple[ParamSpec, ...]
    num_examples: int
    batch_share: BatchShare = "full"
    attribution: Attribution = "uniform"
    # Per-example attribution only: how Δw is split (responsibility.recording.per_example). Parameters without an
    # example form are recorded uniformly (with batch_share "full").
    share_rule: ShareRule = "gradient"

    def __post_init__(self) -> None:
        for p in self.params:
            # Names become Zarr node names: no path separators or relative components.
            if not p.name or "/" in p.name or p.name in (".", "..") or p.name.startswith("__"):
                raise ValueError(f"parameter name {p.name!r} cannot be stored")
            check_choice(f"granularity of {p.name!r}", p.granularity, Granularity)
            if any(int(d) < 0 for d in p.shape):
                raise ValueError(f"shape of {p.name!r} is invalid: {p.shape}")
        if self.num_examples <= 0:
            raise ValueError(f"num_examples must be positive, got {self.num_examples}")
        check_choice("batch_share", self.batch_share, BatchShare)
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError("duplicate parameter names in spec")
        if not self.params:
            raise ValueError("a recording needs at least one tracked parameter")
        check_choice("attribution", self.attribution, Attribution)
        check_choice("share_rule", self.share_rule, ShareRule)
        forms = [p for p in self.params if p.example_form is not None]
        if self.attribution == "uniform" and forms:
            raise ValueError(f"a uniform recording has no per-example forms; {forms[0].name!r} has one")
        if self.attribution == "per_example":
            if not forms:
                raise ValueError("a per-example recording needs a parameter with a per-example form")
            self._check_per_example(forms)

    def _check_per_example(self, forms: list[ParamSpec]) -> None:
        if self.batch_share != "full":
            raise ValueError("batch_share applies to uniform attribution; per-example shares already sum to Δw")
        for p in forms:
            check_choice(f"example_form of {p.name!r}", p.example_form, ExampleForm)
            if (p.example_form == "units") != (p.granularity == "neuron"):
                raise ValueError(
                    f"{p.name!r}: per-example values at {p.granularity} granularity cannot be journaled in "
                    f"{p.example_form!r} form (neuron granularity journals 'units', weight granularity 'outer' or "
                    "'dense')"
                )
            if p.example_form == "outer" and len(p.shape) != 2:
                raise ValueError(f"{p.name!r}: an 'outer' example form needs a 2-D weight, got shape {p.shape}")

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params)
        raise KeyError(f"parameter {name!r} is not recorded in this store (recorded: {known})")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def journal_columns(self) -> dict[str, dict[str, slice]]:
        """Where each parameter's values sit in a journal row.

        Weight granularity: ``{"delta": signed Δw}``; neuron granularity: ``{"pos": Σ Δw>0, "neg": Σ |Δw<0|}``
        per unit. Parameters follow each other in spec order.
        """
        out: dict[str, dict[str, slice]] = {}
        offset = 0
        for p in self.params:
            if p.granularity == "weight":
                out[p.name] = {"delta": slice(offset, offset + p.numel)}
                offset += p.numel
            else:
                u = p.units
                out[p.name] = {"pos": slice(offset, offset + u), "neg": slice(offset + u, offset + 2 * u)}
                offset += 2 * u
        return out

    @property
    def journal_width(self) -> int:
        """Values journaled per optimizer step."""
        return sum(p.numel if p.granularity == "weight" else 2 * p.units for p in self.params)

    def example_columns(self) -> dict[str, dict[str, slice]]:
        """Where each per-example parameter's values sit in a row of ``journal/examples``.

        ``"outer"`` parameters: ``{"out": output gradient, "in": layer input}``; ``"dense"``: ``{"grad": ...}``;
        ``"units"``: ``{"pos": Σ share⁺ per unit, "neg": Σ |share⁻| per unit}``. Uniformly recorded parameters
        have none.
        """
        out: dict[str, dict[str, slice]] = {}
        offset = 0
        for p in self.params:
            if p.example_form == "outer":
                rows, cols = p.shape[0], p.shape[1]
                out[p.name] = {"out": slice(offset, offset + rows), "in": slice(offset + rows, offset + rows + cols)}
            elif p.example_form == "units":
                u = p.units
                out[p.name] = {"pos": slice(offset, offset + u), "neg": slice(offset + u, offset + 2 * u)}
            elif p.example_form == "dense":
                out[p.name] = {"grad": slice(offset, offset + p.numel)}
            offset += p.example_width
        return out

    @property
    def example_width(self) -> int:
        """Values journaled per example (0 for uniform attribution)."""
        return sum(p.example_width for p in self.params) if self.attribution == "per_example" else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "params": [p.to_json() for p in self.params],
            "num_examples": self.num_examples,
            "batch_share": self.batch_share,
            "attribution": self.attribution,
            "share_rule": self.share_rule,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RecordingSpec:
        return cls(
            params=tuple(ParamSpec.from_json(p) for p in d["params"]),
            num_examples=int(d["num_examples"]),
            batch_share=d["batch_share"],
            attribution=d.get("attribution", "uniform"),
            share_rule=d.get("share_rule", "gradient"),
        )

    def differences(self, other: RecordingSpec) -> list[str]:
        """Human-readable reasons why ``other`` cannot write into a store recorded with ``self``."""
        out: list[str] = []
        if self.num_examples != other.num_examples:
            out.append(f"num_examples: store has {self.num_examples}, run has {other.num_examples}")
        for field in ("batch_share", "attribution", "share_rule"):
            a, b = getattr(self, field), getattr(other, field)
            if a != b:
                out.append(f"{field}: store has {a!r}, run has {b!r}")
        mine = {p.name: p for p in self.params}
        theirs = {p.name: p for p in other.params}
        for name in sorted(mine.keys() - theirs.keys()):
            out.append(f"parameter {name!r} is in the store but not tracked by the run")
        for name in sorted(theirs.keys() - mine.keys()):
            out.append(f"parameter {name!r} is tracked by the run but not in the store")
        for name in sorted(mine.keys() & theirs.keys()):
            a, b = mine[name], theirs[name]
            if a.shape != b.shape:
                out.append(f"parameter {name!r}: store shape {a.shape}, run shape {b.shape}")
            if a.granularity != b.granularity:
                out.append(f"parameter {name!r}: store granularity {a.granularity}, run {b.granularity}")
            if a.example_form != b.example_form:
                out.append(f"parameter {name!r}: store example form {a.example_form}, run {b.example_form}")
        return out


def check_class_names(class_names: Sequence[str] | None, labels: np.ndarray | None) -> list[str] | None:
    """Class names as stored: strings, one per class, covering every label."""
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)) or not all(isinstance(c, str) for c in class_names):
        raise ValueError(f"class_names must be a sequence of strings, got {class_names!r}")
    names = list(class_names)
    if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(
            f"{len(names)} class names do not cover the labels (from {int(labels.min())} to {int(labels.max())})"
        )
    return names
