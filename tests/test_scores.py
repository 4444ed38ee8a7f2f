"""Example-level scores and mislabel metrics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from responsibility.evaluation import detection_curve, mislabel_auc, recall_at
from responsibility.recorder import Recorder
from responsibility.scores import class_agreement, self_responsibility
from responsibility.spec import ParamSpec, RecordingSpec
from responsibility.store import Layout, ResponsibilityStore


def test_detection_metrics_by_hand():
    scores = np.array([0.9, 0.1, 0.8, 0.5, 0.8])  # ranking: 0, 2, 4 (tie broken by id), 3, 1
    flipped = np.array([4, 1])
    np.testing.assert_allclose(detection_curve(scores, flipped), [0, 0, 0.5, 0.5, 1.0])
    assert recall_at(scores, flipped, 0.6) == 0.5 and recall_at(scores, flipped, 0.4) == 0.0
    assert mislabel_auc(scores, flipped) == pytest.approx(2.0 / 5)
    with pytest.raises(ValueError):
        recall_at(scores, flipped, 0.0)


def _store(tmp_path, steps):
    w = torch.nn.Parameter(torch.zeros(2))
    spec = RecordingSpec((ParamSpec("w", (2,)),), num_examples=4)
    store = ResponsibilityStore.create(
        tmp_path / "s.zarr", spec, layout=Layout(chunk_steps=2), labels=np.array([0, 0, 1, 1])
    )
    rec = Recorder(store, [(spec.params[0], w)], background=False)
    for ids, delta in steps:
        rec.snapshot()
        with torch.no_grad():
            w.add_(torch.tensor(delta))
        rec.record_step(ids)
    rec.close()
    return store


def test_self_responsibility_and_class_agreement_by_hand(tmp_path):
    # Class 0 = examples 0, 1 pushes w up; example 1 (mislabelled) pushes like class 1 (down).
    store = _store(
        tmp_path,
        [([0], [1.0, 1.0]), ([1], [-1.0, -1.0]), ([2], [-1.0, -0.5]), ([3], [-1.0, -1.0]), ([0, 2], [0.5, 0.0])],
    )
    np.testing.assert_allclose(self_responsibility(store), [2.0 + 0.5, 2.0, 1.5 + 0.5, 2.0])
    # D = R_pos - R_neg: ex0 [1.5, 1], ex1 [-1, -1], ex2 [-0.5, -0.5], ex3 [-1, -1]
    # class means: c0 [0.25, 0], c1 [-0.75, -0.75]
    d = np.array([[1.5, 1.0], [-1, -1], [-0.5, -0.5], [-1, -1]])
    means = np.array([[0.25, 0.0], [-0.75, -0.75]])[[0, 0, 1, 1]]
    cos = (d * means).sum(1) / np.linalg.norm(d, axis=1) / np.linalg.norm(means, axis=1)
    got = class_agreement(store)
    np.testing.assert_allclose(got, 1 - cos)
    assert int(np.argmax(got)) == 1  # the mislabelled example is the most suspicious
