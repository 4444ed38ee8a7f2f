"""Choosing which parameters to track, and at which granularity, from glob patterns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

import torch

from responsibility.choices import Granularity, check_choice
from responsibility.errors import LayerSelectionError
from responsibility.store.spec import ParamSpec

GranularitySetting = str | Mapping[str, str]


def _prefixes(name: str) -> list[str]:
    """``"a.b.weight"`` -> ``["a", "a.b", "a.b.weight"]``: a module pattern matches all its parameters."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def matches(name: str, pattern: str) -> bool:
    """Whether parameter ``name`` is selected by ``pattern`` (its own name or any enclosing module's)."""
    return any(fnmatchcase(prefix, pattern) for prefix in _prefixes(name))


def _normalise_layers(layers: str | Sequence[str] | None) -> list[str] | None:
    if layers is None:
        return None
    if isinstance(layers, str):
        return [layers]
    out = [str(p) for p in layers]
    if not out:
        raise LayerSelectionError("layers=[] selects nothing; pass None to track all trainable parameters")
    return out


def validate_granularity(granularity: GranularitySetting) -> None:
    """Raise early on a misspelt granularity, before any model is seen."""
    values = granularity.values() if isinstance(granularity, Mapping) else [granularity]
    for value in values:
        check_choice("granularity", value, Granularity, LayerSelectionError)


def resolve_granularity(name: str, granularity: GranularitySetting) -> Granularity:
    """The granularity of parameter ``name``: later mapping entries override earlier ones; default weight."""
    chosen = granularity if isinstance(granularity, str) else "weight"
    if isinstance(granularity, Mapping):
        for pattern, value in granularity.items():
            if matches(name, pattern):
                chosen = value
    return check_choice("granularity", chosen, Granularity, LayerSelectionError)


def select_parameters(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    layers: str | Sequence[str] | None = None,
    granularity: GranularitySetting = "weight",
) -> list[tuple[ParamSpec, torch.nn.Parameter]]:
    """Pick the tracked parameters of a model.

    ``layers=None`` takes every parameter with ``requires_grad``; otherwise every parameter (frozen ones too)
    whose name or enclosing module name matches one of the glob patterns. Each pattern, and each pattern of a
    granularity mapping, must match at least one parameter of the model: a typo is an error, not an empty recording.
    """
    validate_granularity(granularity)
    patterns = _normalise_layers(layers)
    params = list(named_parameters)
    all_names = [n for n, _ in params]
    if patterns is None:
        chosen = [(n, p) for n, p in params if p.requires_grad]
    else:
        unmatched = [pat for pat in patterns if not any(matches(n, pat) for n in all_names)]
        if unmatched:
            raise LayerSelectionError(
                f"layer pattern(s) {unmatched} match no parameter of the model; parameters are: {all_names}"
            )
        chosen = [(n, p) for n, p in params if any(matches(n, pat) for pat in patterns)]
    if not chosen:
        raise LayerSelectionError("no parameter selected for tracking (is every parameter frozen?)")
    if isinstance(granularity, Mapping):
        # Against the whole model, not just the tracked layers: a project-wide mapping (say, fc1 per unit) stays
        # valid when a run tracks fewer layers, while a typo is still caught.
        unmatched = [pat for pat in granularity if not any(matches(n, pat) for n in all_names)]
        if unmatched:
            raise LayerSelectionError(
                f"granularity pattern(s) {unmatched} match no parameter of the model; parameters are: {all_names}"
            )
    return [
        (ParamSpec(name=n, shape=tuple(p.shape), granularity=resolve_granularity(n, granularity)), p) for n, p in chosen
    ]
