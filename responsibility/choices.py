"""Every closed set of options, defined once: a ``Literal`` for type checkers, its values (``typing.get_args``) for
runtime checks, and one :func:`check_choice` that turns a bad value into a clear error."""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

Granularity = Literal["weight", "neuron"]
BatchShare = Literal["full", "mean"]
Sign = Literal["abs", "pos", "neg"]
Attribution = Literal["uniform", "per_example"]
ShareRule = Literal["gradient", "magnitude"]
ShareRuleSetting = Literal["auto", "gradient", "magnitude"]
# How a parameter's per-example gradients are journaled: "outer" = the two factors of a Linear weight's rank-1
# gradient (output gradient, input), "dense" = the gradient itself.
ExampleForm = Literal["outer", "dense"]
FoldMode = Literal["auto", "always", "never"]
OnError = Literal["raise", "warn"]
Codec = Literal["lz4", "zstd", "none"]
RDtype = Literal["float32", "float16"]
ActivationRule = Literal["sum", "max"]
OpenMode = Literal["r", "r+"]
ShareLevel = Literal["weight", "unit", "layer"]
# What a curation change does to its examples (responsibility.curation).
CurationAction = Literal["relabel", "remove", "restore", "reweight", "note", "tag", "untag"]

GRANULARITIES: tuple[Granularity, ...] = get_args(Granularity)
BATCH_SHARES: tuple[BatchShare, ...] = get_args(BatchShare)
SIGNS: tuple[Sign, ...] = get_args(Sign)
ATTRIBUTIONS: tuple[Attribution, ...] = get_args(Attribution)
SHARE_RULES: tuple[ShareRule, ...] = get_args(ShareRule)
EXAMPLE_FORMS: tuple[ExampleForm, ...] = get_args(ExampleForm)
CODECS: tuple[Codec, ...] = get_args(Codec)
ACTIVATION_RULES: tuple[ActivationRule, ...] = get_args(ActivationRule)
CURATION_ACTIONS: tuple[CurationAction, ...] = get_args(CurationAction)

T = TypeVar("T")


def check_choice(name: str, value: Any, allowed: Any, error: type[Exception] = ValueError) -> Any:
    """Return ``value`` if it is one of ``allowed`` (a ``Literal`` type or a sequence), else raise ``error``.

    The message names the option and every allowed value, e.g. ``sign must be one of 'abs', 'pos', 'neg'; got
    'both'``.
    """
    values = get_args(allowed) or tuple(allowed)
    if value not in values:
        raise error(f"{name} must be one of {', '.join(repr(v) for v in values)}; got {value!r}")
    return value
