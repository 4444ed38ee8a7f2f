"""attribute() and the default explain(): the contribution method against a naive per-input autograd reference,
its exact sum on the final layer, normalisations, signs, targets, and explain == top-k of attribute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import SgdClassifier, make_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from responsibility import ResponsibilityCallback, ResponsibilityStore
from responsibility.kernels import topk_rows
from responsibility.query import Explainer, ExplainOptions, attribute, explain

N = 24


def conv_net() -> nn.Module:
    # In-place ReLU after a Linear: the hook must see the gradient of the Linear's own output.
    return nn.Sequential(
        nn.Conv2d(1, 3, kernel_size=3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5),
        nn.ReLU(inplace=True),
        nn.Linear(5, 3),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A conv net trained with plain SGD and per-example attribution: each example's push is its own update."""
    torch.manual_seed(0)
    x = torch.randn(N, 1, 6, 6)
    y = torch.randint(0, 3, (N,))
    model = SgdClassifier(conv_net())
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tmp = tmp_path_factory.mktemp("contribution")
    cb = ResponsibilityCallback(tmp / "s.zarr", attribution="per_example", topk=5)
    make_trainer(tmp, [cb]).fit(model, DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True))
    return model, ResponsibilityStore.open(tmp / "s.zarr"), init


def naive(model, store, x, targets, names, sign="net"):
    """Per input, per layer: autograd gradient of the target logit · R of each example, in float64 loops."""
    layers: dict[str, list[str]] = {}
    for n in names:
        layers.setdefault(n.rsplit(".", 1)[0], []).append(n)
    params = dict(model.named_parameters())
    out = {}
    for layer, members in layers.items():
        s = np.zeros((len(x), N))
        sq = np.zeros(N)
        for n in members:
            pos, neg = (store.read(n, v).reshape(N, -1).astype(np.float64) for v in ("pos", "neg"))
            push = {"net": pos - neg, "pos": pos, "neg": -neg, "abs": pos + neg}[sign]
            sq += (push**2).sum(1)
            for b in range(len(x)):
                z = model(x[b : b + 1])[0, int(targets[b])]
                (g,) = torch.autograd.grad(z, [params[n]])
                g = g.double().flatten().numpy()
                s[b] += push @ (np.abs(g) if sign == "abs" else g)
        out[layer] = (s, np.sqrt(sq))
    return out


def combine(parts, normalize):
    total = 0
    for s, norms in parts.values():
        # An example that never moved the layer (or an input with all-zero scores) keeps 0.
        if normalize == "cosine":
            s = np.divide(s, norms, out=np.zeros_like(s), where=norms > 0)
        if normalize != "none":
            rows = np.linalg.norm(s, axis=1, keepdims=True)
            s = np.divide(s, rows, out=np.zeros_like(s), where=rows > 0)
        total = total + s
    return total


@pytest.mark.parametrize("normalize", ["none", "layer", "cosine"])
@pytest.mark.parametrize("sign", ["net", "abs", "neg"])
def test_matches_naive_reference(run, normalize, sign):
    model, store, _ = run
    torch.manual_seed(1)
    x = torch.randn(5, 1, 6, 6)
    targets = [0, 2, 1, 1, 0]
    got = attribute(model, store, x, targets=targets, normalize=normalize, sign=sign)
    assert got.shape == (5, N) and got.dtype == np.float32
    want = combine(naive(model, store, x, targets, store.parameters, sign), normalize)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6 * np.abs(want).max())


def test_final_layer_sum_is_the_learnt_change_of_the_target_logit(run):
    """Plain SGD, per-example shares: the pushes of all examples add up to the final layer's whole change, and the
    logit is linear in that layer, so the raw scores sum to logit(trained) - logit(final layer reset to init)."""
    model, store, init = run
    x = torch.randn(4, 1, 6, 6)
    scores = attribute(model, store, x, layers="net.5", normalize="none", targets=2)
    with torch.no_grad():
        features = model.net[:5](x)
        now = model.net[5](features)[:, 2]
        before = features @ init["net.5.weight"][2] + init["net.5.bias"][2]
    np.testing.assert_allclose(scores.astype(np.float64).sum(1), (now - before).numpy(), rtol=1e-4, atol=1e-5)


def test_net_is_pos_plus_neg_and_predicted_is_the_default_target(run):
    model, store, _ = run
    x = torch.randn(6, 1, 6, 6)
    net = attribute(model, store, x, normalize="none")
    parts = [attribute(model, store, x, normalize="none", sign=s) for s in ("pos", "neg")]
    np.testing.assert_allclose(net, parts[0] + parts[1], rtol=1e-4, atol=1e-6)
    predicted = model(x).argmax(1).tolist()
    np.testing.assert_array_equal(net, attribute(model, store, x, normalize="none", targets=predicted))
    # One class for all inputs, and one per input: each row is the single-class answer for its own class.
    per_input = attribute(model, store, x, targets=[0, 1, 2, 0, 1, 2])
    for c in range(3):
        rows = [b for b in range(6) if b % 3 == c]
        np.testing.assert_allclose(per_input[rows], attribute(model, store, x[rows], targets=c), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "options",
    [
        ExplainOptions(k=4),
        ExplainOptions(k=6, normalize="none", sign="pos", layers="net.3"),
        ExplainOptions(k=3, targets=1, batch_size=2),
        ExplainOptions(k=5, method="most_activated", sign="net", top_weights=3),
        ExplainOptions(k=5, method="most_activated", sign="abs"),  # served from the top-k index
    ],
)
def test_explain_is_the_top_k_of_attribute(run, options):
    model, store, _ = run
    x = torch.randn(7, 1, 6, 6)
    ex = explain(model, store, x, options)
    dense = attribute(model, store, x, options)
    ids, vals = topk_rows(torch.from_numpy(dense), options.k)
    assert ex.example_ids.tolist() == ids.tolist()
    np.testing.assert_allclose(ex.scores, vals.numpy(), rtol=1e-5, atol=1e-7)
    assert ex.method == options.method and ex.labels is not None and ex.labels.shape == (7, options.k)
    assert ex.predicted.tolist() == model(x).argmax(1).tolist()


def test_inputs_are_explained_alone(run):
    model, store, _ = run
    x = torch.randn(5, 1, 6, 6)
    explainer = Explainer(model, store)
    whole = explainer.attribute(x)
    for b in range(5):
        np.testing.assert_allclose(explainer.attribute(x[b : b + 1])[0], whole[b], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explainer.attribute(x, batch_size=2), whole, rtol=1e-5, atol=1e-7)


def test_explanations_differ_between_inputs(run):
    """The point of the default: an input's list depends on the input, not just on its class."""
    model, store, _ = run
    x = torch.randn(12, 1, 6, 6)
    ex = explain(model, store, x, k=3, targets=0)
    assert len({tuple(row) for row in ex.example_ids.tolist()}) > 1


def test_streamed_pushes_equal_cached_ones(run):
    model, store, _ = run
    x = torch.randn(3, 1, 6, 6)
    cached = Explainer(model, store).attribute(x)
    streamed = Explainer(model, store, cache_bytes=0).attribute(x)
    np.testing.assert_allclose(streamed, cached, rtol=1e-5, atol=1e-7)


def test_frozen_parameters_and_float64_inputs(run):
    model, store, _ = run
    x = torch.randn(3, 1, 6, 6)
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    want = attribute(model, store, x)
    model.requires_grad_(False)
    try:
        np.testing.assert_allclose(attribute(model, store, x.double().numpy()), want, rtol=1e-5, atol=1e-7)
        # Queries write no .grad: whatever training left there stays.
        for p, g in zip(model.parameters(), grads, strict=True):
            assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    finally:
        model.requires_grad_(True)


def test_bad_targets(run):
    model, store, _ = run
    x = torch.randn(3, 1, 6, 6)
    with pytest.raises(ValueError, match="targets has 2 entries for 3 inputs"):
        attribute(model, store, x, targets=[0, 1])
    with pytest.raises(ValueError, match=r"target class 3 outside \[0, 3\)"):
        attribute(model, store, x, targets=3)
    with pytest.raises(TypeError, match="unknown option"):
        attribute(model, store, x, k=3)


def test_neuron_granularity_uses_the_mean_gradient_of_each_unit(tmp_path):
    """A unit's R column sums its incoming weights' pushes; its coefficient is the mean of the input's gradient
    over those weights (exact when the example moved them all alike)."""
    torch.manual_seed(0)
    x, y = torch.randn(N, 1, 6, 6), torch.randint(0, 3, (N,))
    model = SgdClassifier(conv_net())
    cb = ResponsibilityCallback(tmp_path / "s.zarr", granularity={"*": "weight", "net.0": "neuron", "net.3": "neuron"})
    make_trainer(tmp_path, [cb]).fit(model, DataLoader(TensorDataset(x, y), batch_size=4))
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    probe = torch.randn(3, 1, 6, 6)
    got = attribute(model, store, probe, normalize="none")
    params = dict(model.named_parameters())
    want = np.zeros((3, N))
    for b in range(3):
        z = model(probe[b : b + 1])
        grads = torch.autograd.grad(z[0, int(z.argmax())], [params[n] for n in store.parameters])
        for n, g in zip(store.parameters, grads, strict=True):
            g = g.double()
            if store.param(n).granularity == "neuron" and g.dim() > 1:
                g = g.flatten(1).mean(1)
            push = store.read(n, "pos").reshape(N, -1).astype(np.float64) - store.read(n, "neg").reshape(N, -1)
            want[b] += push @ g.flatten().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
