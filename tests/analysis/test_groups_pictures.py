"""Group views against naive loops and a hand-built store; figures are written as PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import IndexedData, TinyNet, make_trainer
from torch.utils.data import DataLoader

from responsibility import RecordingSpec, ResponsibilityCallback, ResponsibilityStore
from responsibility.analysis.groups import class_share, diagonal_dominance, group_responsibility, interclass_matrix
from responsibility.query import explain
from responsibility.recording.recorder import Recorder
from responsibility.report.pictures import explanation_grid, interclass_heatmap, responsibility_violin
from responsibility.store.spec import ParamSpec

PNG = b"\x89PNG\r\n\x1a\n"


class TinyNetWithForward(TinyNet):
    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("groups")
    model = TinyNetWithForward()
    cb = ResponsibilityCallback(tmp / "s.zarr", topk=4, granularity={"net.0.bias": "neuron"})
    make_trainer(tmp, [cb]).fit(model, DataLoader(IndexedData(48), batch_size=8, shuffle=True))
    return model, ResponsibilityStore.open(tmp / "s.zarr")


def test_group_sums_match_naive_loop(run):
    _, store = run
    labels = store.labels
    for name in store.parameters:
        r = store.read(name, "pos").astype(np.float64)
        want = np.zeros((3, *r.shape[1:]))
        for m in range(store.num_examples):
            want[labels[m]] += r[m]
        got = group_responsibility(store, name, sign="pos", budget_bytes=48 * 12 * 3)  # several column blocks
        np.testing.assert_allclose(got, want, rtol=1e-6)
    odd_even = np.arange(48) % 2
    got = group_responsibility(store, "net.2.weight", odd_even, num_groups=4)
    assert got.shape == (4, 3, 6) and np.all(got[2:] == 0)


def test_class_share_levels(run):
    _, store = run
    r = store.read("net.2.weight").astype(np.float64)
    per_class = np.stack([r[store.labels == c].sum(0) for c in range(3)])
    share = class_share(store, "net.2.weight")
    np.testing.assert_allclose(share, per_class / per_class.sum(0), rtol=1e-6)
    unit = class_share(store, "net.2.weight", level="unit")
    np.testing.assert_allclose(unit, per_class.sum(2) / per_class.sum(2).sum(0), rtol=1e-6)
    layer = class_share(store, "net.2.weight", level="layer")
    assert layer.shape == (3,) and layer.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="level"):
        class_share(store, "net.2.weight", level="neuron")


def test_interclass_matrix_on_hand_built_store(tmp_path):
    """Two classes, two output units; every step moves unit c's weights by a known amount."""
    spec = RecordingSpec((ParamSpec("fc.weight", (2, 3)),), num_examples=4)
    store = ResponsibilityStore.create(tmp_path / "h.zarr", spec, labels=np.array([0, 0, 1, 1]))
    w = torch.nn.Parameter(torch.zeros(2, 3))
    rec = Recorder(store, [(spec.params[0], w)], background=False)
    for ids, unit, delta in (([0], 0, 1.0), ([1, 2], 1, -2.0), ([3], 1, 0.5), ([0, 3], 0, 0.25)):
        rec.snapshot()
        with torch.no_grad():
            w[unit] += delta
        rec.record_step(ids)
    rec.close()
    store.fold()
    m = interclass_matrix(store, "fc.weight")
    # class 0 = examples 0, 1; class 1 = examples 2, 3; each step moves 3 weights of one unit by |delta|.
    want = np.array([[3 * 1.0 + 3 * 0.25, 3 * 2.0], [3 * 0.25, 3 * 2.0 + 3 * 0.5]])
    np.testing.assert_allclose(m, want)
    np.testing.assert_allclose(interclass_matrix(store, "fc.weight", normalize=True), want / want.sum(0))
    assert diagonal_dominance(want) == pytest.approx((3.75 + 7.5) / 2 / ((6.0 + 0.75) / 2))
    with pytest.raises(ValueError, match="square"):
        diagonal_dominance(np.ones((2, 3)))


def test_no_labels_is_a_clear_error(tmp_path):
    spec = RecordingSpec((ParamSpec("w", (2,)),), num_examples=3)
    store = ResponsibilityStore.create(tmp_path / "n.zarr", spec)
    with pytest.raises(ValueError, match="no labels"):
        group_responsibility(store, "w")


def test_pictures_are_pngs(run, tmp_path):
    model, store = run
    data = IndexedData(48)
    ex = explain(model, store, data.x[:3], k=4)
    images = data.x.reshape(48, 2, 4)  # any 2-D picture of the features will do
    out = explanation_grid(ex, images[:3], images, store.labels, ["a", "b", "c"], tmp_path / "grid.png")
    heat = interclass_heatmap(interclass_matrix(store, "net.2.weight"), ["a", "b", "c"], tmp_path / "heat.png")
    violin = responsibility_violin(store, None, tmp_path / "violin.png")
    for path in (out, heat, violin):
        data = path.read_bytes()
        assert data[:8] == PNG and len(data) > 1000
