"""Which parameters a run tracks, and at which granularity (responsibility.recording.selection)."""

from __future__ import annotations

import pytest
from torch import nn

from responsibility.errors import LayerSelectionError
from responsibility.recording.selection import select_parameters


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_a_granularity_mapping_for_untracked_layers_applies_to_the_tracked_ones() -> None:
    # A project-wide mapping names layer 0; a run tracking only layer 2 keeps it (per unit on layer 2 via "*").
    chosen = select_parameters(_net().named_parameters(), ["2"], {"*": "neuron", "0": "weight"})
    assert [(s.name, s.granularity) for s, _ in chosen] == [("2.weight", "neuron"), ("2.bias", "neuron")]


def test_layer_and_granularity_typos_are_errors() -> None:
    with pytest.raises(LayerSelectionError, match=r"\['fc9'\] match no parameter"):
        select_parameters(_net().named_parameters(), ["fc9"], "weight")
    with pytest.raises(LayerSelectionError, match=r"granularity pattern\(s\) \['fc9'\] match no parameter"):
        select_parameters(_net().named_parameters(), ["2"], {"*": "weight", "fc9": "neuron"})
