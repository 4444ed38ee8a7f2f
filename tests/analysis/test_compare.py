"""Comparing two runs' predictions and scores against hand-counted answers."""

from __future__ import annotations

import numpy as np
import pytest

from responsibility.analysis.compare import compare_predictions, percentiles, score_shift


def test_predictions_compared_input_by_input():
    y = np.array([0, 0, 1, 1, 2, 2])
    a = np.array([0, 1, 1, 0, 2, 1])  # right: 0, 2, 4
    b = np.array([0, 0, 2, 0, 2, 2])  # right: 0, 1, 4, 5
    c = compare_predictions(y, a, b, num_classes=4)
    assert c.accuracy_a == pytest.approx(3 / 6) and c.accuracy_b == pytest.approx(4 / 6)
    assert c.per_class_a[:3].tolist() == [0.5, 0.5, 0.5] and np.isnan(c.per_class_a[3])
    assert c.per_class_b[:3].tolist() == [1.0, 0.0, 1.0]
    assert c.counts.tolist() == [2, 2, 2, 0]
    assert c.fixed.tolist() == [1, 5] and c.broken.tolist() == [2]
    assert c.changed.tolist() == [1, 2, 5]
    # rows: A right / wrong; columns: B right / wrong
    assert c.table.tolist() == [[2, 1], [2, 1]]
    doc = c.to_json()
    assert doc["per_class_a"][3] is None and doc["fixed"] == [1, 5]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one length"):
        compare_predictions(np.zeros(3, int), np.zeros(2, int), np.zeros(3, int), 2)
    with pytest.raises(ValueError, match="predicted_b must lie"):
        compare_predictions(np.zeros(3, int), np.zeros(3, int), np.full(3, 2), 2)


def test_score_shift_in_values_and_percentiles():
    a = np.array([0.1, 0.5, 0.3, 0.9])
    b = np.array([4.0, 1.0, 2.0, 3.0])
    assert percentiles(a).tolist() == pytest.approx([0, 2 / 3, 1 / 3, 1])
    shift = score_shift(np.array([3, 1]), a, b)
    assert shift["a"] == [0.9, 0.5] and shift["b"] == [3.0, 1.0]
    assert shift["percentile_a"] == pytest.approx([1.0, 2 / 3])
    assert shift["percentile_b"] == pytest.approx([2 / 3, 0.0])
    with pytest.raises(ValueError, match="ids must lie"):
        score_shift(np.array([4]), a, b)
