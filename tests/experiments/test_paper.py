"""The paper's remaining experiments (responsibility.experiments.paper, scripts/paper.py): overlap metrics against
hand values, the explanation and nearest-neighbour helpers against independent computations, and a tiny end-to-end
run of all four experiments on scikit-learn's digits whose written files are checked against each other and
against the store."""

from __future__ import annotations

import csv
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CONF
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from responsibility.analysis.groups import diagonal_dominance
from responsibility.evaluation import expected_random_jaccard, shuffled_jaccard, top1_agreement, topk_jaccard
from responsibility.experiments.paper import (
    EvaluatorCNN,
    nearest_examples,
    penultimate_features,
    responsible_examples,
    run_paper,
    train_recorded,
)
from responsibility.store import ResponsibilityStore

CONF = str(CONF)
# A tiny digits set-up: seconds per training run.
TINY = [
    "data=digits",
    "data.num_samples=120",
    "data.test_samples=90",
    "data.batch_size=4",
    "trainer.max_epochs=1",
    "model.lr=0.05",
    "model.momentum=0.0",
    "seeds.seeds=[0,1]",
    "seeds.n_test=40",
    "seeds.ks=[1,3]",
    "misclassified.k=3",
    "misclassified.grid_rows=2",
    "evaluator.seeds=[0]",
    "evaluator.epochs=2",
]


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="paper", overrides=list(overrides))


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------------- overlap metrics
def test_topk_jaccard_and_top1_agreement_by_hand():
    a = np.array([[1, 2, 3], [4, 5, 6], [7, 7, 8]])
    b = np.array([[3, 2, 9], [7, 8, 9], [8, 9, 7]])
    # {1,2,3} vs {2,3,9}: 2 / 4; disjoint: 0; {7,8} vs {7,8,9}: 2 / 3 (a repeated id counts once)
    np.testing.assert_allclose(topk_jaccard(a, b), [0.5, 0.0, 2 / 3])
    np.testing.assert_allclose(topk_jaccard(a, a), [1.0, 1.0, 1.0])
    assert top1_agreement(np.array([[1, 2], [3, 4], [5, 6]]), np.array([[1, 9], [4, 3], [5, 0]])) == pytest.approx(
        2 / 3
    )
    assert top1_agreement(np.array([1, 2]), np.array([[1, 0], [0, 2]])) == 0.5  # 1-D = the top-1 ids
    with pytest.raises(ValueError):
        topk_jaccard(a, b[:, :2])
    with pytest.raises(ValueError):
        top1_agreement(np.array([1, 2]), np.array([1]))


def test_expected_random_jaccard_by_hand_and_by_enumeration():
    # n = 4, k = 2: 6 subsets; P(|A∩B| = 2) = 1/6 (J = 1), P(1) = 4/6 (J = 1/3), P(0) = 1/6: E = 7/18
    assert expected_random_jaccard(4, 2) == pytest.approx(7 / 18)
    assert expected_random_jaccard(50, 1) == pytest.approx(1 / 50)
    assert expected_random_jaccard(5, 5) == pytest.approx(1.0)
    n, k = 7, 3
    subsets = [set(s) for s in combinations(range(n), k)]
    brute = np.mean([len(s & t) / len(s | t) for s in subsets for t in subsets])
    assert expected_random_jaccard(n, k) == pytest.approx(brute)
    with pytest.raises(ValueError):
        expected_random_jaccard(3, 4)


def test_shuffled_jaccard_pairs_rows_only_within_their_group_and_never_with_themselves():
    ids = np.array([[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]])
    groups = np.array([0, 0, 0, 1, 2])  # group 2 is alone: skipped
    assert shuffled_jaccard(ids, ids, groups, seed=3) == 0.0  # every row differs from every other row
    # Within group 0 all rows share one set (as class-wide hub examples would): the baseline is 1.
    hubs = np.array([[0, 1], [1, 0], [0, 1], [6, 7], [8, 9]])
    assert shuffled_jaccard(hubs, hubs, np.array([0, 0, 0, 1, 1]), seed=0) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="no group"):
        shuffled_jaccard(ids, ids, np.arange(5))


# ------------------------------------------------------------------------------------------ explanation helpers
def test_nearest_examples_by_hand():
    keys = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0], [1.0, 0.0]])
    queries = torch.tensor([[0.9, 0.0], [0.0, 4.0], [0.4, 0.0]])
    np.testing.assert_array_equal(nearest_examples(queries, keys), [1, 2, 0])  # key 3 ties key 1: smaller id
    # Only keys of the query's group: query 0 may use keys 0 and 2, query 1 key 1, query 2 key 3.
    got = nearest_examples(queries, keys, np.array([0, 1, 2]), np.array([0, 1, 0, 2]))
    np.testing.assert_array_equal(got, [0, 1, 3])
    with pytest.raises(ValueError, match="no key"):
        nearest_examples(queries, keys, np.array([0, 1, 5]), np.array([0, 1, 0, 2]))
    with pytest.raises(ValueError):
        nearest_examples(queries, keys, np.array([0, 1, 2]))


def test_evaluator_cnn_shapes_and_errors():
    net = EvaluatorCNN(in_channels=2, image_size=8, num_outputs=10)
    assert net(torch.zeros(3, 2, 8, 8)).shape == (3, 10)
    with pytest.raises(ValueError):
        EvaluatorCNN(in_channels=0, image_size=8, num_outputs=2)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One tiny recorded digits run (batch 1, plain SGD): the model, its store and the data."""
    cfg = _compose(*TINY, "data.num_samples=60", "data.batch_size=1")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    run = train_recorded(cfg, dm, seed=0, run_dir=tmp_path_factory.mktemp("paper_run"))
    return cfg, dm, run


def test_responsible_examples_match_an_independent_weight_choice_and_ranking(recorded):
    """The chosen weight is argmax_i |W[c, i]·h_i| of the predicted class c (h: the penultimate features), and the
    examples are ranked by R, R_pos or R_pos − R_neg of that weight's column, read straight from the store."""
    cfg, dm, run = recorded
    x = dm.test_set.images[:25]
    h = penultimate_features(run.model, x, 10)
    manual_h = torch.relu(run.model.net.fc1(torch.relu(run.model.net.conv(x)).flatten(1)))
    torch.testing.assert_close(h, manual_h)
    w = run.model.net.fc2.weight.detach()
    logits = h @ w.T + run.model.net.fc2.bias.detach()
    c = logits.argmax(1)
    column = (c * w.shape[1] + (w[c] * h).abs().argmax(1)).numpy()
    n = run.store.num_examples
    pos = run.store.read("net.fc2.weight", "pos").reshape(n, -1)[:, column]
    neg = run.store.read("net.fc2.weight", "neg").reshape(n, -1)[:, column]
    for sign, r in (("abs", pos + neg), ("pos", pos), ("signed", pos - neg)):
        pred, ids, scores = responsible_examples(run.model, run.store, x, k=4, layers=["net.fc2.weight"], sign=sign)
        np.testing.assert_array_equal(pred, c.numpy())
        want = np.argsort(-r.T, axis=1, kind="stable")[:, :4]
        np.testing.assert_array_equal(ids, want, err_msg=sign)
        np.testing.assert_allclose(scores, np.take_along_axis(r.T, want, 1), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="sign"):
        responsible_examples(run.model, run.store, x, k=1, layers=None, sign="net")


# ------------------------------------------------------------------------------------------------ configs
def test_experiment_configs_pick_one_experiment_each():
    for name, experiment in (
        ("a2", "interclass"),
        ("a4", "misclassified"),
        ("a5", "seeds"),
        ("evaluator", "evaluator"),
    ):
        cfg = _compose(f"experiment=paper_{name}", "paths.output_dir=/tmp/x")
        assert list(cfg.experiments) == [experiment] and cfg.task_name == f"paper_{name}"
        assert cfg.docs_dir.endswith(f"docs/results/paper_{name}")
    full = _compose("paths.output_dir=/tmp/x")
    assert list(full.experiments) == ["interclass", "misclassified", "seeds", "evaluator"]
    assert full.data.num_samples == 5000 and full.data.batch_size == 1 and full.data.seed == 0
    assert full.model.optimizer == "sgd" and list(full.callbacks.responsibility.layers) == ["net.fc2"]


def test_bad_experiment_names_and_signs_are_errors(tmp_path):
    with pytest.raises(ValueError, match="experiments"):
        run_paper(_compose(*TINY, "experiments=[a2]", f"paths.output_dir={tmp_path}"))
    with pytest.raises(ValueError, match="explain.signs"):
        run_paper(_compose(*TINY, "explain.signs=[abs,net]", f"paths.output_dir={tmp_path}"))


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    cfg = _compose(*TINY, f"paths.output_dir={out}", "publish=true", f"docs_dir={out}/docs")
    return out, cfg, run_paper(cfg, command="test")


def test_end_to_end_writes_every_file_and_publishes(paper_run):
    out, cfg, results = paper_run
    names = [
        "results.json",
        "results.md",
        "interclass.csv",
        "interclass.png",
        "misclassified.csv",
        "misclassified_abs.png",
        "misclassified_signed.png",
        "seeds_overlap.csv",
        "seeds_topk.csv",
        "seeds_overlap.png",
        "evaluator.csv",
        "evaluator.png",
    ]
    for name in names:
        assert (out / name).stat().st_size > 0, name
        assert (out / "docs" / name).exists(), name
    assert json.loads((out / "results.json").read_text())["setup"]["train_examples"] == 120
    # Seed 0 is trained once and shared by the actor experiments and A.5; seed 1 only for A.5.
    assert set(results["setup"]["test_accuracy"]) == {"0", "1"}
    assert results["setup"]["steps"] == 30  # 120 examples, batch 4, 1 epoch
    md = (out / "results.md").read_text()
    for title in ("A.2", "A.4", "A.5", "Section 4"):
        assert title in md


def test_interclass_matrix_adds_up_to_the_store(paper_run):
    out, cfg, results = paper_run
    store = ResponsibilityStore.open(out / "runs" / "seed0" / "responsibility.zarr")
    labels = store.labels
    for sign in ("abs", "pos", "neg"):
        r = store.read("net.fc2.weight", sign).reshape(store.num_examples, 10, -1).sum(2)  # (examples, units)
        want = np.stack([r[labels == cls].sum(0) for cls in range(10)])
        v = results["interclass"]["signs"][sign]
        np.testing.assert_allclose(v["matrix"], want, rtol=1e-5)
        off = (want.sum() - np.trace(want)) / 90
        assert v["diagonal_dominance"] == pytest.approx(np.trace(want) / 10 / off, rel=1e-5)
        assert v["diagonal_dominance_normalized"] == pytest.approx(diagonal_dominance(want / want.sum(0)), rel=1e-6)
    rows = _csv(out / "interclass.csv")
    assert len(rows) == 3 * 100


def test_misclassified_table_agrees_with_the_fractions_and_the_store_labels(paper_run):
    out, cfg, results = paper_run
    store = ResponsibilityStore.open(out / "runs" / "seed0" / "responsibility.zarr")
    rows = _csv(out / "misclassified.csv")
    for sign, v in results["misclassified"]["signs"].items():
        mine = [r for r in rows if r["sign"] == sign]
        assert len(mine) == v["misclassified"] > 0
        assert all(r["true_label"] != r["predicted_label"] for r in mine)
        for r in mine:
            for rank in (1, 2, 3):
                assert int(r[f"top{rank}_label"]) == store.labels[int(r[f"top{rank}_id"])]
        top1 = np.array([int(r["top1_label"]) for r in mine])
        pred = np.array([int(r["predicted_label"]) for r in mine])
        true = np.array([int(r["true_label"]) for r in mine])
        assert v["top1_label_is_predicted"] == pytest.approx(np.mean(top1 == pred))
        assert v["top1_label_is_true"] == pytest.approx(np.mean(top1 == true))
        total = v["top1_label_is_predicted"] + v["top1_label_is_true"] + v["top1_label_is_other"]
        assert total == pytest.approx(1.0)
    accuracy = 1 - results["misclassified"]["signs"]["abs"]["misclassified"] / 90
    assert accuracy == pytest.approx(results["setup"]["test_accuracy"]["0"])


def test_seed_overlap_recomputed_from_the_written_top_k_sets(paper_run):
    out, cfg, results = paper_run
    rows = _csv(out / "seeds_topk.csv")
    overlap = _csv(out / "seeds_overlap.csv")
    for sign in ("abs", "signed"):
        ids = {
            s: np.array(
                [
                    [int(v) for v in r["example_ids"].split(";")]
                    for r in rows
                    if r["sign"] == sign and int(r["seed"]) == s
                ]
            )
            for s in (0, 1)
        }
        assert ids[0].shape == (40, 3)
        for k in (1, 3):
            want = np.mean(
                [
                    len(set(a[:k]) & set(b[:k])) / len(set(a[:k]) | set(b[:k]))
                    for a, b in zip(ids[0], ids[1], strict=True)
                ]
            )
            row = next(r for r in overlap if r["sign"] == sign and int(r["k"]) == k)
            assert float(row["mean_jaccard"]) == pytest.approx(want, rel=1e-5)
            assert float(row["chance_jaccard"]) == pytest.approx(expected_random_jaccard(120, k), rel=1e-5)
        pair = results["seeds"]["signs"][sign]["pairs"][0]
        assert pair["top1_agreement"] == pytest.approx(np.mean(ids[0][:, 0] == ids[1][:, 0]))
        assert pair["jaccard@1"] == pytest.approx(pair["top1_agreement"])


def test_evaluator_rows_conditions_and_nearest_neighbour_labels(paper_run):
    out, cfg, results = paper_run
    r = results["evaluator"]
    rows = _csv(out / "evaluator.csv")
    conditions = ["majority class (no model)", *cfg.evaluator.explanations]
    assert len(rows) == len(cfg.evaluator.targets) * len(conditions)
    assert all(0.0 <= float(row["accuracy"]) <= 1.0 for row in rows)
    assert r["pool"]["size"] == 2 * r["pool"]["misclassified"]
    assert sum(r["split"].values()) == r["pool"]["size"]
    assert r["accuracy"]["correct"]["majority class (no model)"]["mean"] == pytest.approx(0.5, abs=0.1)
    # nn_same_class: the neighbour is always an example of the predicted class.
    assert r["explanation_labels"]["nn_input"]["label_is_predicted"] == 1.0
    assert r["explanation_labels"]["nn_feature"]["label_is_predicted"] == 1.0
    assert r["actor_test_accuracy"] == pytest.approx(results["setup"]["test_accuracy"]["0"])
    OmegaConf.resolve(cfg)  # the composed config resolves fully
