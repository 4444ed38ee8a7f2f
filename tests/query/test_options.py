"""QueryOptions / ExplainOptions: validated once when made, one object for every query, keywords override it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from responsibility.query import MAX_OUTLIERS, ExplainOptions, QueryOptions

PAPER = {"method": "most_activated"}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"k": 0}, "k must be"),
        ({"k": 2.5}, "k must be"),
        ({**PAPER, "top_weights": 0}, "top_weights must be"),
        ({**PAPER, "outliers": 0.0}, "outliers must be"),
        ({"top_weights": 3}, "method='most_activated'"),
        ({"targets": "max"}, "targets must be"),
        ({"targets": True}, "targets must be"),
        ({"targets": -1}, "must be >= 0"),
        ({"targets": [[0, 1]]}, "targets must be"),
        ({"targets": [0.5, 1.0]}, "targets must be"),
        ({"targets": "any"}, "method='most_activated'"),
        ({"sign": "both"}, "sign must be one of"),
        ({"method": "tracin"}, "method must be one of"),
        ({"normalize": "l1"}, "normalize must be one of"),
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
    opts = ExplainOptions(layers=["net.0", "net.2"], targets=np.array([2, 0, 1]))
    assert opts.layers == ("net.0", "net.2") and opts.targets == (2, 0, 1)
    assert ExplainOptions(targets=torch.tensor(3)).targets == 3
    assert ExplainOptions(targets=np.int64(1)).targets == 1
    assert ExplainOptions(**PAPER, targets="any").targets == "any"
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.k = 3  # type: ignore[misc]
    assert ExplainOptions().weights_per_input == 1
    assert ExplainOptions(**PAPER, outliers=2.0).weights_per_input == MAX_OUTLIERS
    assert ExplainOptions(**PAPER, outliers=2.0, top_weights=4).weights_per_input == 4
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['kk'\]"):
        ExplainOptions().with_changes({"kk": 3})
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['k'\] for QueryOptions"):
        QueryOptions().with_changes({"k": 3})  # k belongs to explain, not to the dense scores
    with pytest.raises(TypeError, match="forward must be callable"):
        QueryOptions(forward="model.forward")  # type: ignore[arg-type]


def test_defaults_are_the_input_specific_method():
    opts = ExplainOptions()
    assert (opts.method, opts.sign, opts.normalize, opts.targets, opts.k) == ("contribution", "net", "cosine", None, 10)
    assert isinstance(opts, QueryOptions)  # the same options give attribute's dense scores
