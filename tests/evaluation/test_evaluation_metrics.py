"""quanda-style metrics of responsibility.evaluation against hand computations and naive references."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from helpers import CONF, SgdClassifier, make_trainer
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from responsibility import ResponsibilityCallback, ResponsibilityStore
from responsibility.evaluation import (
    auprc,
    class_detection,
    linear_datamodeling_score,
    model_randomization,
    randomization_test,
    rankdata,
    spearman,
    topk_cardinality,
)
from responsibility.query import attribute, explain


def test_rankdata_and_spearman_match_scipy():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(6, 30)).astype(float)  # many ties
    b = rng.normal(size=(6, 30))
    np.testing.assert_allclose(rankdata(a), stats.rankdata(a, axis=1))
    want = [stats.spearmanr(a[i], b[i]).statistic for i in range(6)]
    np.testing.assert_allclose(spearman(a, b), want)
    assert spearman(a[0], b[0]) == pytest.approx(want[0])
    assert np.isnan(spearman(np.ones(4), np.arange(4.0)))


def test_model_randomization_by_hand():
    s = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 3.0, 2.0]])
    assert model_randomization(s, s * 10 + 1) == pytest.approx(1.0)  # monotone transform: rank-identical
    assert model_randomization(s, -s) == pytest.approx(-1.0)
    # row 0 vs [1, 3, 2, 4]: d = (0, 1, 1, 0), rho = 1 - 6·2/(4·15) = 0.8; row 1 is constant and skipped
    r = np.array([[1.0, 3.0, 2.0, 4.0], [5.0, 5.0, 5.0, 5.0]])
    assert model_randomization(s, r) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="constant"):
        model_randomization(np.ones((2, 3)), s[:, :3])


class _TableModel:
    """A hand-built "model": a fixed prediction for every input and, per class, fixed scores of 4 examples."""

    def __init__(self, predicts: int, table: dict[int, list[float]]) -> None:
        self.predicts, self.table = predicts, table


def _explain_table(model: _TableModel, targets: np.ndarray) -> np.ndarray:
    return np.array([model.table[int(t)] for t in targets])


def test_randomization_test_uses_the_trained_models_targets():
    """The re-initialised model predicts class 1 everywhere, the trained one class 0. Explaining class 0 the two
    models rank the examples identically (Spearman 1); the random model's own class 1 reverses the ranking.
    Same-target randomization (quanda, Adebayo et al.) must report 1.0, not the own-prediction -1.0."""
    trained = _TableModel(0, {0: [1.0, 2.0, 3.0, 4.0], 1: [4.0, 3.0, 2.0, 1.0]})
    randomized = _TableModel(1, {0: [10.0, 20.0, 30.0, 40.0], 1: [40.0, 30.0, 20.0, 10.0]})
    targets = np.full(3, trained.predicts)
    asked: list[tuple[int, list[int]]] = []

    def explain(model: _TableModel, t: np.ndarray) -> np.ndarray:
        asked.append((model.predicts, t.tolist()))
        return _explain_table(model, t)

    assert randomization_test(explain, trained, randomized, targets) == pytest.approx(1.0)
    assert asked == [(0, [0, 0, 0]), (1, [0, 0, 0])]  # the random model was asked for the trained class
    own = _explain_table(randomized, np.full(3, randomized.predicts))
    assert model_randomization(_explain_table(trained, targets), own) == pytest.approx(-1.0)  # the old protocol


def test_class_detection_and_cardinality_by_hand():
    assert class_detection(np.array([0, 1, 1, 2]), np.array([0, 1, 0, 0])) == 0.5
    assert topk_cardinality(np.array([[0, 1, 2], [2, 1, 5]])) == pytest.approx(4 / 6)
    assert topk_cardinality(np.array([[7], [7], [7]])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        topk_cardinality(np.array([1, 2]))
    with pytest.raises(ValueError):
        class_detection(np.array([1]), np.array([1, 2]))


def test_auprc_by_hand_and_against_sklearn():
    # ranking 0, 1, 2, 3 with relevant 0 and 2: precisions 1/1 and 2/3
    assert auprc(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0], bool)) == pytest.approx((1 + 2 / 3) / 2)
    # tie between ids 1 and 2 goes to the smaller id: ranking 0, 1, 2 with relevant 2 -> precision 1/3
    assert auprc(np.array([0.9, 0.5, 0.5]), np.array([0, 0, 1], bool)) == pytest.approx(1 / 3)
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    scores, mask = rng.normal(size=200), rng.random(200) < 0.2
    assert auprc(scores, mask) == pytest.approx(average_precision_score(mask, scores))
    with pytest.raises(ValueError):
        auprc(scores, np.zeros(200, bool))


def test_lds_by_hand():
    tau = np.array([[1.0, 2.0, 3.0], [3.0, 0.0, -1.0]])
    subsets = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]], bool)
    # predicted: test 0 -> 3, 5, 4, 6; test 1 -> 3, -1, 2, 2
    outputs_exact = np.array([[3, 3], [5, -1], [4, 2], [6, 2]], float) * 2 + 1
    assert linear_datamodeling_score(tau, subsets, outputs_exact) == pytest.approx(1.0)
    outputs = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [4.0, 3.0]])
    want = np.mean(
        [
            stats.spearmanr([3, 5, 4, 6], outputs[:, 0]).statistic,
            stats.spearmanr([3, -1, 2, 2], outputs[:, 1]).statistic,
        ]
    )
    assert linear_datamodeling_score(tau, subsets, outputs) == pytest.approx(want)
    with pytest.raises(ValueError, match="shapes"):
        linear_datamodeling_score(tau, subsets, outputs.T)


def _sgd_model() -> SgdClassifier:
    torch.manual_seed(0)
    return SgdClassifier(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)))


def test_attribute_reproduces_explain_of_the_paper_rule(tmp_path):
    """The full score vectors (attribute, which replaced explanation_scores) rank the same top-k as explain(), with
    the same scores, for 1 and 3 chosen weights."""
    torch.manual_seed(0)
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    model = _sgd_model()
    cb = ResponsibilityCallback(tmp_path / "s.zarr", topk=5)
    make_trainer(tmp_path, [cb], max_epochs=2).fit(model, DataLoader(TensorDataset(x, y), batch_size=1))
    store = ResponsibilityStore.open(tmp_path / "s.zarr")
    probe = torch.randn(4, 5)
    for top_weights in (1, 3):
        paper = {"method": "most_activated", "sign": "abs", "top_weights": top_weights}
        ex = explain(model, store, probe, k=5, **paper)
        full = attribute(model, store, probe, **paper)
        assert full.shape == (4, 20)
        for b in range(4):
            order = np.argsort(-full[b], kind="stable")[:5]
            np.testing.assert_array_equal(order, ex[b].example_ids)
            np.testing.assert_allclose(full[b, order], ex[b].scores, rtol=1e-5)


def test_evaluate_end_to_end_on_digits(tmp_path):
    """conf/evaluate.yaml composed on scikit-learn's digits, two seeds: every table and file is written for each
    seed, metrics in range, and the summary holds each seed's metric and their mean and spread."""
    from hydra import compose, initialize_config_dir

    from responsibility.experiments.evaluate import evaluate

    conf = str(CONF)
    cleanlab = importlib.util.find_spec("cleanlab") is not None  # an optional extra: absent from .[dev]
    overrides = [
        "data=digits",
        "data.num_samples=120",
        "data.label_noise=0.1",
        "data.num_classes=10",
        "data.batch_size=16",
        "model.optimizer=sgd",
        "model.lr=0.05",
        "trainer.max_epochs=1",
        "seeds=[0,1]",
        f"peers.cleanlab.folds={2 if cleanlab else 0}",
        "sanity.n_test=8",
        "lds.subsets=2",
        "fix_labels.steps=1",
        f"paths.output_dir={tmp_path}",
        "publish=true",
        f"docs_dir={tmp_path}/docs",
    ]
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
    summary = evaluate(cfg, command="test")
    assert summary["seeds"] == [0, 1]
    runs = [json.loads((tmp_path / f"seed{s}" / "results.json").read_text()) for s in (0, 1)]
    peers = ["final_loss", "aum", "tracin_self_influence"] + ["cleanlab_label_quality"] * cleanlab
    for seed, results in enumerate(runs):
        assert results["seed"] == seed
        names = [r["score"] for r in results["mislabel"]]
        assert names == [*cfg.scores, *peers, "random"]
        assert all(0 <= r["recall@20%"] <= 1 and 0 <= r["auc"] <= 1 for r in results["mislabel"])
        assert set(results["sanity"]) == {"responsibility", "paper_rule", "tracin"}
        assert set(results["lds"]) == set(results["sanity"])
        assert results["fix_labels"]["fractions"] == [0.0, 1.0] and results["fix_labels"]["retrained_models"] == 2
        for name in ("results.json", "mislabel.csv", "results.md", "detection.png", "fix_labels.png"):
            assert (tmp_path / f"seed{seed}" / name).stat().st_size > 0
            assert (tmp_path / "docs" / f"seed{seed}" / name).exists()
        assert results["setup"]["flipped"] == 12
    assert runs[0]["flipped_ids"] != runs[1]["flipped_ids"]  # the seed draws the data and the flips
    for name in ("results.json", "results.md"):
        assert (tmp_path / name).stat().st_size > 0 and (tmp_path / "docs" / name).exists()
    for method in ("responsibility", "paper_rule", "tracin"):
        for metric in ("class_detection", "model_randomization", "topk_cardinality", "lds"):
            got = summary["explanations"][method][metric]
            want = [r["lds"][method] if metric == "lds" else r["sanity"][method][metric] for r in runs]
            assert got["per_seed"] == want
            assert got["mean"] == pytest.approx(np.mean(want)) and got["std"] == pytest.approx(np.std(want))
    auc = summary["mislabel"]["final_loss"]["auc"]
    assert auc["per_seed"] == [next(r["auc"] for r in run["mislabel"] if r["score"] == "final_loss") for run in runs]
    assert "same targets" in (tmp_path / "results.md").read_text().lower()
