"""explain() with the paper's rule (method="most_activated"): known answers, targets, batching, aggregation of
several weights, outliers, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import SgdClassifier, make_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from responsibility import ResponsibilityCallback, ResponsibilityStore, StoreMismatchError
from responsibility.query import Explainer, ExplainOptions, explain, robust_z
from responsibility.query.activations import compute_activations

# The paper's rule as it was the default: R (abs) of the most activated weight(s).
PAPER = ExplainOptions(method="most_activated", sign="abs")


def paper(model, store, x, **changes):
    return explain(model, store, x, PAPER, **changes)


def fit(tmp, model, x, y, batch_size=1, epochs=2, **cb):
    cb = ResponsibilityCallback(tmp / "s.zarr", **{"topk": 5, **cb})
    make_trainer(tmp, [cb], max_epochs=epochs).fit(model, DataLoader(TensorDataset(x, y), batch_size=batch_size))
    return ResponsibilityStore.open(tmp / "s.zarr")


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """Feature 0 is non-zero only in example 7, so only example 7 ever moves the weights net.0.weight[:, 0]."""
    torch.manual_seed(0)
    x = torch.randn(24, 6)
    x[:, 0] = 0.0
    x[7, 0] = 2.0
    y = torch.randint(0, 3, (24,))
    # Tanh rather than ReLU: no dead unit, so every weight of column 0 is moved by example 7.
    model = SgdClassifier(nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)))
    store = fit(tmp_path_factory.mktemp("mlp"), model, x, y)
    return model, store


def test_known_answer_linear(mlp_run):
    model, store = mlp_run
    r = store.read("net.0.weight")
    assert np.all(r[:, :, 0][np.arange(24) != 7] == 0) and np.all(r[7, :, 0] > 0)
    probe = torch.zeros(1, 6)
    probe[0, 0] = 3.0
    ex = paper(model, store, probe, k=3, layers="net.0.weight")
    assert ex[0].weights[0][0] == "net.0.weight" and ex[0].weights[0][1][1] == 0
    assert ex[0].example_ids[0] == 7 and ex[0].scores[0] > 0 and ex[0].scores[1] == 0
    assert ex.labels is not None and ex.labels[0, 0] == int(store.labels[7])


def test_known_answer_conv2d(tmp_path):
    """Only example 3 has a pixel that the kernel offset (1, 1) alone sees (others live in row 0 and column 0)."""
    torch.manual_seed(1)
    x = torch.zeros(12, 1, 5, 5)
    x[:, 0, 0, :] = torch.rand(12, 5)
    x[:, 0, :, 0] = torch.rand(12, 5)
    x[3] = 0.0
    x[3, 0, 4, 4] = 1.0
    y = torch.randint(0, 2, (12,))
    net = nn.Sequential(nn.Conv2d(1, 2, kernel_size=2), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    model = SgdClassifier(net)
    store = fit(tmp_path, model, x, y, epochs=1)
    probe = torch.zeros(1, 1, 5, 5)
    probe[0, 0, 4, 4] = 1.0
    ex = paper(model, store, probe, k=2, layers="net.0.weight")
    assert ex[0].weights[0][1][2:] == (1, 1)
    assert ex[0].example_ids[0] == 3 and ex[0].scores[1] == 0


def _final_activations(model, x):
    acts = compute_activations(model, x, ["net.2.weight"])
    return acts.output, acts.values["net.2.weight"]


def test_target_predicted_int_and_none(mlp_run):
    model, store = mlp_run
    x = torch.randn(5, 6)
    logits, a = _final_activations(model, x)
    for target in (None, 1, "any"):
        ex = paper(model, store, x, k=2, layers="net.2.weight", targets=target)
        for b, item in enumerate(ex):
            _, index, act = item.weights[0]
            if target is None:
                row = int(logits[b].argmax())
                assert item.target == row == item.predicted
            elif target == 1:
                row = 1
            else:
                row = int(a[b].flatten().argmax()) // a.shape[2]
                assert item.target is None
            assert index[0] == row
            assert act == pytest.approx(float(a[b, row].max()))
            ids, vals = store.most_responsible("net.2.weight", 2, weights=[row * a.shape[2] + index[1]])
            assert item.example_ids.tolist() == ids[:, 0].tolist()
    with pytest.raises(ValueError, match="target class"):
        paper(model, store, x, layers="net.2.weight", targets=7)


def test_target_only_restricts_final_layer(mlp_run):
    model, store = mlp_run
    x = torch.randn(4, 6) * 10
    ex = paper(model, store, x, k=2, targets=0)
    a = compute_activations(model, x, store.parameters).values
    for b, item in enumerate(ex):
        name, index, act = item.weights[0]
        candidates = [float(a[n][b].max()) for n in store.parameters if n not in ("net.2.weight", "net.2.bias")]
        candidates += [float(a["net.2.weight"][b, 0].max()), float(a["net.2.bias"][b, 0])]
        assert act == pytest.approx(max(candidates))
        if name.startswith("net.2"):
            assert index[0] == 0


def test_batch_equals_single_inputs(mlp_run):
    model, store = mlp_run
    x = torch.randn(7, 6)
    for kw in ({}, {"top_weights": 3}, {"outliers": 1.5}, {"targets": "any", "sign": "pos"}):
        batch = paper(model, store, x, k=4, **kw)
        for b in range(len(x)):
            one = paper(model, store, x[b : b + 1], k=4, **kw)[0]
            assert one.example_ids.tolist() == batch[b].example_ids.tolist()
            np.testing.assert_allclose(one.scores, batch[b].scores, rtol=1e-6)
            assert [w[:2] for w in one.weights] == [w[:2] for w in batch[b].weights]
    small_chunks = paper(model, store, x, k=4, top_weights=2, batch_size=3)
    np.testing.assert_array_equal(small_chunks.example_ids, paper(model, store, x, k=4, top_weights=2).example_ids)


def test_top_weights_aggregation_by_hand(mlp_run):
    model, store = mlp_run
    x = torch.randn(3, 6)
    ex = paper(model, store, x, k=5, layers=["net.0", "net.2"], targets="any", top_weights=3)
    a = compute_activations(model, x, store.parameters).values
    for b, item in enumerate(ex):
        flat = [(float(a[n][b].flatten()[j]), n, j) for n in store.parameters for j in range(a[n][b].numel())]
        best = sorted(flat, key=lambda t: -t[0])[:3]
        # Names exactly, activations approximately (pytest 9's approx takes no nested structures).
        assert [n for n, _, _ in item.weights] == [n for _, n, _ in best]
        assert [float(act) for _, _, act in item.weights] == pytest.approx([v for v, _, _ in best])
        total = sum(v for v, _, _ in best)
        score = sum(v / total * store.read(n).reshape(24, -1)[:, j].astype(np.float64) for v, n, j in best)
        order = np.argsort(-score, kind="stable")[:5]
        assert item.example_ids.tolist() == order.tolist()
        np.testing.assert_allclose(item.scores, score[order], rtol=1e-5)


def test_outliers_selection(mlp_run):
    model, store = mlp_run
    x = torch.randn(4, 6) * 3
    z_threshold = 2.0
    ex = paper(model, store, x, k=2, layers="net.0.weight", outliers=z_threshold, top_weights=4)
    a = compute_activations(model, x, ["net.0.weight"]).values["net.0.weight"].reshape(4, -1)
    z = robust_z(a)
    for b, item in enumerate(ex):
        want = [j for j in torch.argsort(a[b], descending=True, stable=True).tolist() if z[b, j] > z_threshold][:4]
        if not want:
            want = [int(a[b].argmax())]
        got = [int(np.ravel_multi_index(idx, (5, 6))) for _, idx, _ in item.weights]
        assert got == want


def test_robust_z_known_values():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0], [0.0, 0.0, 0.0, 0.0, 5.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    z = robust_z(a)
    assert z[0, 4] == pytest.approx((100 - 3) / (1.4826 * 1.0))
    assert z[1, 4] == pytest.approx(5 / (1.2533 * 1.0))  # MAD = 0: mean absolute deviation is the scale
    assert torch.all(z[2] == 0)


def test_results_export(mlp_run, tmp_path):
    model, store = mlp_run
    ex = paper(model, store, torch.randn(2, 6), k=3, top_weights=2)
    doc = json.loads(ex.to_json(tmp_path / "e.json"))
    assert len(doc["inputs"]) == 2 and len(doc["inputs"][0]["example_ids"]) == 3
    assert json.loads((tmp_path / "e.json").read_text()) == doc
    records = ex.to_records()
    assert len(records) == 6 and records[0]["rank"] == 1
    ex.to_csv(tmp_path / "e.csv")
    assert (tmp_path / "e.csv").read_text().splitlines()[0].startswith("input,predicted")
    assert ex.example_ids.shape == ex.scores.shape == (2, 3)


def test_unfolded_store_and_deep_k_match_index(tmp_path, mlp_run):
    model, folded = mlp_run
    torch.manual_seed(0)
    x = torch.randn(24, 6)
    y = torch.randint(0, 3, (24,))
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    unfolded = fit(tmp_path, SgdClassifier(net), x, y, fold="never")
    assert unfolded.folded_steps("net.0.weight") == 0
    probe = torch.randn(3, 6)
    want = np.argsort(-folded.read("net.0.weight").reshape(24, -1), axis=0, kind="stable")
    ex = paper(model, folded, probe, k=8, layers="net.0.weight")  # k deeper than the index (5)
    for item in ex:
        col = int(np.ravel_multi_index(item.weights[0][1], (5, 6)))
        assert item.example_ids.tolist() == want[:8, col].tolist()
    ex2 = paper(model, unfolded, probe, k=3, layers="net.0.weight")  # computed from the journal
    lazy = np.argsort(-unfolded.read("net.0.weight").reshape(24, -1), axis=0, kind="stable")
    for item in ex2:
        col = int(np.ravel_multi_index(item.weights[0][1], (5, 6)))
        assert item.example_ids.tolist() == lazy[:3, col].tolist()


def test_errors(mlp_run):
    model, store = mlp_run
    x = torch.randn(2, 6)
    with pytest.raises(ValueError, match="match no parameter of the store.*net.0.weight"):
        paper(model, store, x, layers="fc9")
    with pytest.raises(ValueError, match="k must be"):
        paper(model, store, x, k=0)
    with pytest.raises(ValueError, match="sign"):
        paper(model, store, x, sign="both")
    other = SgdClassifier(nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)))
    with pytest.raises(StoreMismatchError, match="net.0.weight has shape"):
        Explainer(other, store)


def test_known_answer_target_on_final_layer(tmp_path):
    """A single Linear layer is the final layer: feature 0 is non-zero only in example 5, so for every target
    class c the chosen weight is [c, 0] and the answer is example 5; other features' weights never win."""
    torch.manual_seed(2)
    x = torch.randn(16, 4) * 0.1
    x[:, 0] = 0.0
    x[5, 0] = 1.5
    y = torch.arange(16) % 3
    model = SgdClassifier(nn.Sequential(nn.Linear(4, 3)))
    store = fit(tmp_path, model, x, y)
    probe = torch.zeros(1, 4)
    probe[0, 0] = 2.0
    logits = model(probe)
    for target, row in [(0, 0), (1, 1), (2, 2), (None, int(logits.argmax()))]:
        ex = paper(model, store, probe, k=2, layers="net.0.weight", targets=target)
        name, index, _ = ex[0].weights[0]
        assert (name, index) == ("net.0.weight", (row, 0)), target
        assert ex[0].example_ids[0] == 5 and ex[0].scores[1] == 0
    ex = paper(model, store, probe, k=1, layers="net.0.weight", targets="any")
    assert ex[0].weights[0][1][1] == 0 and ex[0].example_ids[0] == 5


def test_options_object_and_keywords_give_one_answer(mlp_run):
    model, store = mlp_run
    x = torch.randn(4, 6)
    opts = ExplainOptions(method="most_activated", k=3, top_weights=2, sign="pos")
    by_object = explain(model, store, x, opts)
    by_keywords = explain(model, store, x, method="most_activated", k=3, top_weights=2, sign="pos")
    overridden = Explainer(model, store).explain(
        x, PAPER.with_changes({"k": 7, "sign": "neg"}), k=3, top_weights=2, sign="pos"
    )
    for other in (by_keywords, overridden):
        assert other.example_ids.tolist() == by_object.example_ids.tolist()
        assert [e.weights for e in other] == [e.weights for e in by_object]
    with pytest.raises(TypeError, match="unknown option"):
        paper(model, store, x, topk=3)
    with pytest.raises(ValueError, match=r"k must be in \[1, 24\]"):
        paper(model, store, x, k=25)
