"""Activation rules against naive loops over outputs, positions and kernel offsets."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from responsibility.query.activations import activation_modules, compute_activations


def naive_linear(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    b, (o, i) = x.shape[0], w.shape
    out = torch.zeros(b, o, i, dtype=torch.float64)
    for bb, oo, ii in itertools.product(range(b), range(o), range(i)):
        out[bb, oo, ii] = abs(float(w[oo, ii].detach()) * float(x[bb, ii]))
    return out


def naive_conv2d(conv: nn.Conv2d, x: torch.Tensor, rule: str) -> tuple[torch.Tensor, int]:
    """Per weight, the sum (or max) over output positions of |w · x| of the input value it multiplies."""
    w = conv.weight.detach().double()
    xp = nn.functional.pad(x.double(), (conv.padding[1], conv.padding[1], conv.padding[0], conv.padding[0]))
    b = x.shape[0]
    o_ch, c_ch, kh, kw = w.shape
    sh, sw = conv.stride
    dh, dw = conv.dilation
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = torch.zeros(b, o_ch, c_ch, kh, kw, dtype=torch.float64)
    for bb, o, c, i, j in itertools.product(range(b), range(o_ch), range(c_ch), range(kh), range(kw)):
        terms = [
            abs(float(w[o, c, i, j]) * float(xp[bb, c, p * sh + i * dh, q * sw + j * dw]))
            for p in range(oh)
            for q in range(ow)
        ]
        out[bb, o, c, i, j] = sum(terms) if rule == "sum" else max(terms)
    return out, oh * ow


def naive_conv1d(conv: nn.Conv1d, x: torch.Tensor, rule: str) -> torch.Tensor:
    w = conv.weight.detach().double()
    pad = conv.padding[0]
    xp = nn.functional.pad(x.double(), (pad, pad))
    b, (o_ch, c_ch, k) = x.shape[0], w.shape
    length = (xp.shape[2] - conv.dilation[0] * (k - 1) - 1) // conv.stride[0] + 1
    out = torch.zeros(b, o_ch, c_ch, k, dtype=torch.float64)
    for bb, o, c, i in itertools.product(range(b), range(o_ch), range(c_ch), range(k)):
        terms = [
            abs(float(w[o, c, i]) * float(xp[bb, c, p * conv.stride[0] + i * conv.dilation[0]])) for p in range(length)
        ]
        out[bb, o, c, i] = sum(terms) if rule == "sum" else max(terms)
    return out


def test_linear_weight_bias_and_neuron():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    x = torch.randn(6, 5)
    acts = compute_activations(model, x)
    assert torch.allclose(acts.output, model(x))
    assert torch.allclose(acts.values["0.weight"].double(), naive_linear(model[0].weight, x), atol=1e-6)
    hidden = torch.relu(model[0](x)).detach()
    assert torch.allclose(acts.values["2.weight"].double(), naive_linear(model[2].weight, hidden), atol=1e-6)
    assert torch.allclose(acts.values["0.bias"], model[0].bias.abs().expand(6, -1))
    neuron = compute_activations(model, x, ["0.weight"], granularity={"0.weight": "neuron"})
    assert neuron.values["0.weight"].shape == (6, 4)
    assert torch.allclose(neuron.values["0.weight"].double(), naive_linear(model[0].weight, x).sum(2), atol=1e-5)


@pytest.mark.parametrize("rule", ["sum", "max"])
@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_conv2d_against_loops(rule, stride, padding, dilation):
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, kernel_size=3, stride=stride, padding=padding, dilation=dilation)
    x = torch.randn(2, 2, 7, 6)
    acts = compute_activations(conv, x, rule=rule)
    want, _ = naive_conv2d(conv, x, rule)
    assert acts.values["weight"].shape == (2, 3, 2, 3, 3)
    assert torch.allclose(acts.values["weight"].double(), want, atol=1e-5)
    assert torch.allclose(acts.values["bias"], conv.bias.abs().expand(2, -1))  # |b|, whatever the rule
    neuron = compute_activations(conv, x, ["weight"], granularity={"weight": "neuron"}, rule=rule)
    assert torch.allclose(neuron.values["weight"].double(), want.flatten(2).sum(2), atol=1e-4)


@pytest.mark.parametrize("rule", ["sum", "max"])
def test_conv1d_against_loops(rule):
    torch.manual_seed(2)
    conv = nn.Conv1d(3, 2, kernel_size=3, stride=2, padding=1)
    x = torch.randn(3, 3, 11)
    acts = compute_activations(conv, x, rule=rule)
    assert torch.allclose(acts.values["weight"].double(), naive_conv1d(conv, x, rule), atol=1e-5)


def test_grouped_conv_matches_per_group_convs():
    torch.manual_seed(3)
    conv = nn.Conv2d(4, 6, kernel_size=2, groups=2, bias=False)
    x = torch.randn(2, 4, 5, 5)
    got = compute_activations(conv, x).values["weight"]
    for g in range(2):
        sub = nn.Conv2d(2, 3, kernel_size=2, bias=False)
        sub.weight.data = conv.weight.data[3 * g : 3 * g + 3]
        want, _ = naive_conv2d(sub, x[:, 2 * g : 2 * g + 2], "sum")
        assert torch.allclose(got[:, 3 * g : 3 * g + 3].double(), want, atol=1e-5)


def test_linear_over_positions_uses_rule():
    torch.manual_seed(4)
    lin = nn.Linear(4, 2)
    x = torch.randn(3, 5, 4)  # (batch, tokens, features), as in an attention projection
    s = compute_activations(lin, x, rule="sum").values["weight"]
    m = compute_activations(lin, x, rule="max").values["weight"]
    assert torch.allclose(s, lin.weight.abs() * x.abs().sum(1).unsqueeze(1), atol=1e-6)
    assert torch.allclose(m, lin.weight.abs() * x.abs().amax(1).unsqueeze(1), atol=1e-6)


def test_unsupported_layers_are_reported():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    assert set(activation_modules(model)) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    acts = compute_activations(model, torch.randn(2, 3), ["0.weight", "1.weight", "2.weight"])
    assert acts.unsupported == ["1.weight"]
    assert set(acts.values) == {"0.weight", "2.weight"}
    with pytest.raises(ValueError, match="not in the model"):
        compute_activations(model, torch.randn(2, 3), ["nope.weight"])
    with pytest.raises(ValueError, match="rule must be"):
        compute_activations(model, torch.randn(2, 3), rule="mean")
