"""Every closed set of options, defined once: a ``Literal`` for type checkers, its values (``typing.get_args``) for
runtime checks, and one :func:`check_choice` that turns a bad value into a clear error."""

from __future__ import annotations

from typing import Any, Literal, TypeVar, get_args

Granularity = Literal["weight", "neuron"]
BatchShare = Literal["full", "mean"]
Sign = Literal["abs", "pos", "neg"]
Attribution = Literal["uniform", "per_example"]
# The setting: "auto" records per example where that applies (and is cheap) and uniformly elsewhere.
AttributionSetting = Literal["auto", "uniform", "per_example"]
ShareRule = Literal["gradient", "magnitude"]
ShareRuleSetting = Literal["auto", "gradient", "magnitude"]
# How a parameter's per-example values are journaled: "outer" = the two factors of a Linear weight's rank-1
# gradient (output gradient, input), "dense" = the gradient itself, "units" = the example's share of Δw summed per
# unit by sign (neuron granularity).
ExampleForm = Literal["outer", "dense", "units"]
FoldMode = Literal["auto", "always", "never"]
OnError = Literal["raise", "warn"]
Codec = Literal["lz4", "zstd", "none"]
RDtype = Literal["float32", "float16"]
# How journal rows (per-step Δw) are stored: exact float32, or bfloat16 (half the bytes, relative error <= 2^-8).
JournalDtype = Literal["float32", "bfloat16"]
# What a per-example parameter's journal row holds at weight granularity: Δw itself, or (plain SGD) the scale c with
# Δw = c · Σ_j g_j, derived from the examples' journaled gradients (Δw where a step is not such a multiple).
JournalDelta = Literal["stored", "derived"]
ActivationRule = Literal["sum", "max"]
# Queries: how an input's explanation is formed, which R it reads ("net" = R_pos - R_neg), how layers are combined.
QueryMethod = Literal["contribution", "most_activated"]
QuerySign = Literal["net", "abs", "pos", "neg"]
QueryNormalize = Literal["cosine", "layer", "none"]
OpenMode = Literal["r", "r+"]
ShareLevel = Literal["weight", "unit", "layer"]
# What a curation change does to its examples (responsibility.curation).
CurationAction = Literal["relabel", "remove", "restore", "reweight", "note", "tag", "untag"]
# The example scores of the explorer's Suspects view and `responsibility suspects` (higher = look first), and which
# examples a ranking lists.
SuspectScore = Literal["label_push", "self_responsibility", "class_agreement", "final_loss"]
SuspectFilter = Literal["all", "flipped", "curated"]

GRANULARITIES: tuple[Granularity, ...] = get_args(Granularity)
BATCH_SHARES: tuple[BatchShare, ...] = get_args(BatchShare)
SIGNS: tuple[Sign, ...] = get_args(Sign)
ATTRIBUTIONS: tuple[Attribution, ...] = get_args(Attribution)
SHARE_RULES: tuple[ShareRule, ...] = get_args(ShareRule)
EXAMPLE_FORMS: tuple[ExampleForm, ...] = get_args(ExampleForm)
CODECS: tuple[Codec, ...] = get_args(Codec)
ACTIVATION_RULES: tuple[ActivationRule, ...] = get_args(ActivationRule)
QUERY_METHODS: tuple[QueryMethod, ...] = get_args(QueryMethod)
QUERY_SIGNS: tuple[QuerySign, ...] = get_args(QuerySign)
QUERY_NORMALIZE: tuple[QueryNormalize, ...] = get_args(QueryNormalize)
CURATION_ACTIONS: tuple[CurationAction, ...] = get_args(CurationAction)
SUSPECT_SCORES: tuple[SuspectScore, ...] = get_args(SuspectScore)
SUSPECT_FILTERS: tuple[SuspectFilter, ...] = get_args(SuspectFilter)

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
