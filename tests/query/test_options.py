"""ExplainOptions: validated once when made, one object for explain and Explainer, keywords override it."""

from __future__ import annotations

import dataclasses

import pytest

from responsibility.query import MAX_OUTLIERS, ExplainOptions


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"k": 0}, "k must be"),
        ({"k": 2.5}, "k must be"),
        ({"top_weights": 0}, "top_weights must be"),
        ({"outliers": 0.0}, "outliers must be"),
        ({"target": "max"}, "target must be"),
        ({"target": True}, "target must be"),
        ({"sign": "both"}, "sign must be one of"),
        ({"rule": "mean"}, "rule must be one of"),
        ({"batch_size": 0}, "batch_size must be"),
    ],
)
def test_bad_options_fail_when_made(changes, message):
    with pytest.raises(ValueError, match=message):
        ExplainOptions(**changes)
    with pytest.raises(ValueError, match=message):
        ExplainOptions().with_changes(changes)


def test_options_are_frozen_and_normalised():
    opts = ExplainOptions(layers=["net.0", "net.2"])
    assert opts.layers == ("net.0", "net.2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.k = 3  # type: ignore[misc]
    assert ExplainOptions().weights_per_input == 1
    assert ExplainOptions(outliers=2.0).weights_per_input == MAX_OUTLIERS
    assert ExplainOptions(outliers=2.0, top_weights=4).weights_per_input == 4
    with pytest.raises(TypeError, match=r"unknown explain option\(s\) \['kk'\]"):
        ExplainOptions().with_changes({"kk": 3})
