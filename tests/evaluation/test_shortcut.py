"""The shortcut (spurious-correlation) test: planting by hand, metrics by hand, a tiny run end to end on digits."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from helpers import CONF
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from responsibility.evaluation import auprc
from responsibility.evaluation.shortcut import (
    COMPOSITION,
    auprc_rows,
    choose_patched,
    patch_window,
    plant_patch,
    precision_at_k,
    topk_composition,
)

CONF = str(CONF)


# ------------------------------------------------------------------------------------------------ planting
def test_plant_patch_by_hand():
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    patched, mask = plant_patch(images, [0, 2], size=2, value=255, corner="top_right")
    want = images.copy()
    for i in (0, 2):
        want[i, 0:2, 3:5] = 255  # rows 0-1, the last two columns
    np.testing.assert_array_equal(patched, want)
    np.testing.assert_array_equal(mask, [True, False, True])
    assert patched.dtype == np.uint8 and images[0, 0, 4] == 4  # the input is not modified

    # (N, C, H, W): every channel of the masked images; boolean masks are accepted as they are.
    x = np.zeros((2, 2, 3, 3), dtype=np.float32)
    patched, mask = plant_patch(x, np.array([False, True]), size=1, value=0.5, corner="bottom_left")
    assert patched[1, :, 2, 0].tolist() == [0.5, 0.5] and patched.sum() == 1.0
    np.testing.assert_array_equal(mask, [False, True])

    # Torch tensors go in as arrays; an empty id list patches nothing.
    patched, mask = plant_patch(torch.ones(2, 4, 4), [], size=4, value=9.0)
    assert not mask.any() and patched.sum() == 32.0


def test_patch_window_corners():
    assert patch_window(28, 28, 4, "top_left") == (slice(0, 4), slice(0, 4))
    assert patch_window(28, 30, 4, "bottom_right") == (slice(24, 28), slice(26, 30))
    assert patch_window(5, 6, 2, "bottom_left") == (slice(3, 5), slice(0, 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0}, "patch size"),
        ({"size": 5}, "patch size"),
        ({"corner": "middle"}, "corner"),
        ({"value": 256}, "does not fit"),
        ({"value": float("nan")}, "finite"),
    ],
)
def test_plant_patch_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plant_patch(np.zeros((2, 4, 4), np.uint8), [0], **kwargs)


def test_plant_patch_rejects_bad_masks_and_shapes():
    x = np.zeros((3, 4, 4))
    with pytest.raises(ValueError, match="0..2"):
        plant_patch(x, [3])
    with pytest.raises(ValueError, match="shape"):
        plant_patch(x, np.array([True, False]))
    with pytest.raises(ValueError, match="integer ids"):
        plant_patch(x, [0.5])
    with pytest.raises(ValueError, match="images"):
        plant_patch(np.zeros((4, 4)), [0])


def test_choose_patched_counts_and_seed():
    labels = np.array([0] * 10 + [1] * 20 + [2] * 30)
    mask = choose_patched(labels, 1, 0.9, other_fraction=0.05, seed=3)
    assert mask[labels == 1].sum() == 18  # round(0.9 * 20)
    assert mask[labels != 1].sum() == 2  # round(0.05 * 40)
    np.testing.assert_array_equal(mask, choose_patched(labels, 1, 0.9, 0.05, seed=3))
    assert not np.array_equal(mask, choose_patched(labels, 1, 0.9, 0.05, seed=4))
    assert choose_patched(labels, 0, 1.0).sum() == 10 and not choose_patched(labels, 0, 0.0).any()
    with pytest.raises(ValueError, match="occur"):
        choose_patched(labels, 5, 0.9)
    with pytest.raises(ValueError, match="fraction"):
        choose_patched(labels, 0, 1.5)
    with pytest.raises(ValueError, match="other_fraction"):
        choose_patched(labels, 0, 0.5, other_fraction=-0.1)


# ------------------------------------------------------------------------------------------------- metrics
def test_precision_and_auprc_rows_by_hand():
    mask = np.array([True, False, True, False, False])
    scores = np.array(
        [
            [5.0, 4.0, 3.0, 2.0, 1.0],  # ranking 0, 1, 2, 3, 4: hits at ranks 1 and 3
            [0.0, 1.0, 1.0, 0.0, 0.0],  # tie of 1 and 2 goes to 1 first: ranking 1, 2, 0, 3, 4
        ]
    )
    np.testing.assert_allclose(precision_at_k(scores, mask, 1), [1.0, 0.0])
    np.testing.assert_allclose(precision_at_k(scores, mask, 2), [0.5, 0.5])
    np.testing.assert_allclose(precision_at_k(scores, mask, 5), [0.4, 0.4])
    # AP: row 0 = (1/1 + 2/3) / 2; row 1 = (1/2 + 2/3) / 2
    np.testing.assert_allclose(auprc_rows(scores, mask), [(1 + 2 / 3) / 2, (1 / 2 + 2 / 3) / 2])
    # Restricted to examples 1, 2, 3: row 0 ranks 1, 2, 3 (hit at 2); row 1 ranks 1, 2, 3 as well.
    among = np.array([False, True, True, True, False])
    np.testing.assert_allclose(auprc_rows(scores, mask, among), [0.5, 0.5])
    with pytest.raises(ValueError, match="undefined"):
        auprc_rows(scores, mask, np.array([False, True, False, True, True]))
    with pytest.raises(ValueError, match="k must"):
        precision_at_k(scores, mask, 6)
    # Top 2 of row 0: examples 0 (patched, in class) and 1 (unpatched, other); of row 1: 1 and 2 (patched, other).
    in_class = np.array([True, False, False, True, False])
    parts = topk_composition(scores, mask, in_class, 2)
    assert list(parts) == list(COMPOSITION)
    np.testing.assert_allclose(parts["patched_in_class"], [0.5, 0.0])
    np.testing.assert_allclose(parts["unpatched_in_class"], [0.0, 0.0])
    np.testing.assert_allclose(parts["patched_other"], [0.0, 0.5])
    np.testing.assert_allclose(parts["unpatched_other"], [0.5, 0.5])
    with pytest.raises(ValueError, match="in_class"):
        topk_composition(scores, mask, in_class[:4], 2)
    with pytest.raises(ValueError, match="scores"):
        precision_at_k(scores[:, :4], mask, 1)


# ------------------------------------------------------------------------------------------------ end to end
def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="shortcut", overrides=list(overrides))


def test_experiments_compose():
    uni = _compose("experiment=shortcut_fashion", "paths.output_dir=/x")
    pe = _compose("experiment=shortcut_fashion_per_example", "paths.output_dir=/x")
    assert uni.run_name == "fashion_uniform" and pe.run_name == "fashion_per_example"
    assert uni.docs_dir.endswith("docs/results/shortcut/fashion_uniform")
    pe_callback = pe.callbacks.responsibility
    assert pe_callback.granularity == "weight" and list(pe_callback.layers) == ["net.conv", "net.fc2"]
    assert pe.data == uni.data and pe.shortcut == uni.shortcut and pe.model.optimizer == "sgd"
    assert OmegaConf.to_container(uni.shortcut) == {
        "target_class": 0,
        "fraction": 0.9,
        "other_fraction": 0.01,
        "size": 4,
        "corner": "top_left",
        "value": None,
    }


def test_run_shortcut_end_to_end_on_digits(tmp_path):
    """A tiny run: every file is written, figures agree with the saved scores, metrics are in range."""
    from responsibility.experiments.shortcut import PUBLISHED, run_shortcut

    cfg = _compose(
        "data=digits",
        "data.num_samples=150",
        "data.batch_size=16",
        "model.optimizer=sgd",
        "model.lr=0.05",
        "trainer.max_epochs=2",
        "shortcut.target_class=3",
        "shortcut.size=2",
        "shortcut.other_fraction=0.05",
        "test.n_test=12",
        "figure.inputs=2",
        "figure.k=4",
        f"paths.output_dir={tmp_path}",
        "publish=true",
        f"docs_dir={tmp_path}/docs",
    )
    results = run_shortcut(cfg, command="test")
    for name in PUBLISHED:
        assert (tmp_path / name).stat().st_size > 0 and (tmp_path / "docs" / name).exists()
    assert json.loads((tmp_path / "results.json").read_text())["run"] == "default_uniform"

    # The planted data: exactly round(0.9 · n_3) images of class 3 and round(0.05 · others) others.
    s = results["setup"]
    assert s["patched_in_class"] == round(0.9 * s["in_class"])
    assert s["patched_other"] == round(0.05 * (150 - s["in_class"]))
    saved = np.load(tmp_path / "scores.npz")
    patched = saved["patched"]
    assert patched.sum() == s["patched_in_class"] + s["patched_other"] == len(results["patched_ids"])

    t = results["test"]
    assert t["n_test"] == 12 and 0 <= t["flipped"] <= t["not_shortcut_clean"] <= 12
    for key in ("accuracy_clean", "accuracy_shortcut_class_clean", "shortcut_rate_clean", "shortcut_rate_patched"):
        assert 0.0 <= t[key] <= 1.0
    assert t["flip_rate"] == pytest.approx(t["flipped"] / max(1, t["not_shortcut_clean"]))
    assert len(results["flipped_inputs"]) == t["flipped"]

    methods = [
        "responsibility_last_layer",
        "responsibility_last_layer_signed",
        "responsibility_network",
        "responsibility_network_signed",
        "tracin",
        "random",
        "explained_class",
    ]
    rows = [r for r in results["summary"] if r["subset"] == "all"]
    assert [r["method"] for r in rows] == methods
    assert results["metric_names"] == [
        "auprc",
        "auprc_in_class",
        "auprc_other_classes",
        "precision@10",
        "precision@50",
        *(f"top10_{part}" for part in COMPOSITION),
    ]
    for r in rows:
        # Each summary figure is the mean over test inputs of the metric recomputed from the saved scores.
        scores = saved[r["method"]].astype(np.float64)
        assert scores.shape == (12, 150)
        want = np.mean([auprc(row, patched) for row in scores])
        assert r["auprc"] == pytest.approx(want, rel=1e-6)
        assert r["precision@10"] == pytest.approx(precision_at_k(scores, patched, 10).mean())
        for name in results["metric_names"]:
            assert 0.0 <= r[name] <= 1.0
        # The four top-10 shares partition the top 10; its patched shares add up to precision@10.
        assert sum(r[f"top10_{part}"] for part in COMPOSITION) == pytest.approx(1.0)
        assert r["top10_patched_in_class"] + r["top10_patched_other"] == pytest.approx(r["precision@10"])
    # The abs and signed variants are R_pos + R_neg and R_pos − R_neg of the same weights.
    assert np.all(saved["responsibility_last_layer"] >= np.abs(saved["responsibility_last_layer_signed"]) - 1e-4)

    with open(tmp_path / "shortcut.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(results["summary"]) and table[0]["method"] == "responsibility_last_layer"
    md = (tmp_path / "results.md").read_text()
    assert "| tracin | peer |" in md and "What the top 10 are made of" in md


def test_run_shortcut_rejects_bad_settings(tmp_path):
    from responsibility.experiments.shortcut import run_shortcut

    base = ["data=digits", "data.num_samples=60", f"paths.output_dir={tmp_path}"]
    with pytest.raises(ValueError, match="target_class"):
        run_shortcut(_compose(*base, "shortcut.target_class=10"))
    with pytest.raises(ValueError, match="explain.target"):
        run_shortcut(_compose(*base, "explain.target=other"))
