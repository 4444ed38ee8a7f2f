"""Example-level scores and mislabel metrics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from responsibility.analysis.scores import (
    class_agreement,
    held_out_loss,
    label_push,
    recorded_inputs,
    self_responsibility,
)
from responsibility.errors import LayerSelectionError
from responsibility.evaluation import detection_curve, mislabel_auc, recall_at
from responsibility.recording.per_example import ExampleGradients
from responsibility.recording.recorder import Recorder
from responsibility.store import Layout, ResponsibilityStore
from responsibility.store.spec import ParamSpec, RecordingSpec


def test_detection_metrics_by_hand():
    scores = np.array([0.9, 0.1, 0.8, 0.5, 0.8])  # ranking: 0, 2, 4 (tie broken by id), 3, 1
    flipped = np.array([4, 1])
    np.testing.assert_allclose(detection_curve(scores, flipped), [0, 0, 0.5, 0.5, 1.0])
    assert recall_at(scores, flipped, 0.6) == 0.5 and recall_at(scores, flipped, 0.4) == 0.0
    assert mislabel_auc(scores, flipped) == pytest.approx(2.0 / 5)
    with pytest.raises(ValueError):
        recall_at(scores, flipped, 0.0)


def _store(tmp_path, steps, epochs=None):
    w = torch.nn.Parameter(torch.zeros(2))
    spec = RecordingSpec((ParamSpec("w", (2,)),), num_examples=4)
    store = ResponsibilityStore.create(
        tmp_path / "s.zarr", spec, layout=Layout(chunk_steps=2), labels=np.array([0, 0, 1, 1])
    )
    rec = Recorder(store, [(spec.params[0], w)], background=False)
    for i, (ids, delta) in enumerate(steps):
        rec.snapshot()
        with torch.no_grad():
            w.add_(torch.tensor(delta))
        rec.record_step(ids, epoch=-1 if epochs is None else epochs[i])
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


def test_step_windows_and_epoch_steps_by_hand(tmp_path):
    steps = [([0], [1.0, 1.0]), ([1], [-1.0, -1.0]), ([2], [-1.0, -0.5]), ([3], [-1.0, -1.0]), ([0, 2], [0.5, 0.0])]
    store = _store(tmp_path, steps, epochs=[0, 0, 1, 1, 2])
    assert store.epoch_steps(0) == (0, 2) and store.epoch_steps(-1) == (4, 5) and store.epoch_steps([1, 2]) == (2, 5)
    # Epochs 1 and 2 only: ex2 gets 1.5 + 0.5, ex3 2.0, ex0 0.5 (its epoch-0 step is outside the window).
    window = store.epoch_steps([-2, -1])
    np.testing.assert_allclose(self_responsibility(store, steps=window), [0.5, 0.0, 2.0, 2.0])
    np.testing.assert_allclose(store.read("w", "neg", steps=(1, 3)), [[0, 0], [1, 1], [1, 0.5], [0, 0]])
    # The whole journal as a window equals the fold (and the lazy read), bit for bit.
    store = ResponsibilityStore.open(tmp_path / "s.zarr", mode="r+")
    store.fold()
    np.testing.assert_array_equal(store.read("w", steps=(0, store.steps)), store.read("w"))
    with pytest.raises(ValueError, match="not consecutive"):
        store.epoch_steps([0, 2])
    with pytest.raises(ValueError, match="not in the journal"):
        store.epoch_steps(7)
    with pytest.raises(IndexError):
        store.read("w", steps=(2, 9))


def test_label_push_by_hand(tmp_path):
    # An output bias of 2 classes; labels [0, 0, 1, 1]. D[m] per unit: ex0 [1.5, 1], ex1 [-1, -1],
    # ex2 [-0.5, -0.5], ex3 [-1, -1]; each example keeps its own label's unit.
    store = _store(
        tmp_path,
        [([0], [1.0, 1.0]), ([1], [-1.0, -1.0]), ([2], [-1.0, -0.5]), ([3], [-1.0, -1.0]), ([0, 2], [0.5, 0.0])],
    )
    np.testing.assert_allclose(label_push(store), [1.5, -1.0, -0.5, -1.0])
    np.testing.assert_allclose(label_push(store, labels=np.array([1, 1, 0, 0])), [1.0, -1.0, -0.5, -1.0])
    with pytest.raises(ValueError, match="one per class"):
        label_push(store, labels=np.array([0, 1, 2, 2]))
    with pytest.raises(ValueError, match="one unit per class"):
        label_push(store, ["w"], labels=np.array([0, 1, 2, 2]))


def test_label_push_with_plain_sgd_is_the_summed_label_deficit(tmp_path):
    """Per-example, plain SGD, cross-entropy (mean over the batch): the bias part of label_push is exactly
    lr/B · Σ over the steps containing m of (1 − p_label(m)), p from the forward pass of that step."""
    torch.manual_seed(0)
    n, classes, batch, lr = 12, 3, 4, 0.5
    x, y = torch.randn(n, 5), torch.randint(0, classes, (n,))
    fc = torch.nn.Linear(5, classes)
    spec = ParamSpec("fc.bias", (classes,), example_form="dense")
    rspec = RecordingSpec((spec,), num_examples=n, attribution="per_example", share_rule="gradient")
    store = ResponsibilityStore.create(tmp_path / "s.zarr", rspec, layout=Layout(chunk_steps=2), labels=y.numpy())
    rec = Recorder(store, [(spec, fc.bias)], background=False)
    grads = ExampleGradients([(spec, fc, "bias")])
    grads.attach()
    opt = torch.optim.SGD(fc.parameters(), lr=lr)
    want = np.zeros(n)
    for epoch in range(3):
        for ids in torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).split(batch):
            logits = fc(x[ids])
            p = logits.softmax(1).detach().double()
            want[ids.numpy()] += lr / batch * (1 - p[torch.arange(len(ids)), y[ids]]).numpy()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(logits, y[ids]).backward()
            rec.snapshot()
            opt.step()
            rec.record_step(ids, epoch=epoch, examples=grads.take())
    rec.close()
    np.testing.assert_allclose(label_push(store, ["fc.bias"]), want, rtol=1e-4)
    last = store.epoch_steps(-1)
    assert last == (6, 9)
    assert np.all(label_push(store, ["fc.bias"], steps=last) < label_push(store, ["fc.bias"]))


def test_label_push_defaults_to_the_last_layer_with_one_unit_per_class(tmp_path):
    hidden, out = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    spec = RecordingSpec((ParamSpec("hidden.bias", (2,)), ParamSpec("out.bias", (2,))), num_examples=2)
    store = ResponsibilityStore.create(tmp_path / "s.zarr", spec, layout=Layout(chunk_steps=2), labels=np.array([0, 1]))
    rec = Recorder(store, list(zip(spec.params, (hidden, out), strict=True)), background=False)
    for ids, dh, do in (([0], [5.0, 5.0], [1.0, -1.0]), ([1], [-5.0, -5.0], [-2.0, 3.0])):
        rec.snapshot()
        with torch.no_grad():
            hidden.add_(torch.tensor(dh))
            out.add_(torch.tensor(do))
        rec.record_step(ids)
    rec.close()
    np.testing.assert_allclose(label_push(store), [1.0, 3.0])  # out.bias only: ex0 unit 0, ex1 unit 1
    np.testing.assert_allclose(label_push(store, ["hidden.bias", "out.bias"]), [6.0, -2.0])


def _probe_run(tmp_path, n=30, classes=3, batch=4, epochs=3):
    """A per-example SGD run of hidden -> relu -> out with the out Linear's inputs captured by hand at every step."""
    torch.manual_seed(0)
    x, y = torch.randn(n, 5), torch.arange(n) % classes
    hidden, out = torch.nn.Linear(5, 4), torch.nn.Linear(4, classes)
    spec = ParamSpec("out.weight", (classes, 4), example_form="outer")
    rspec = RecordingSpec((spec,), num_examples=n, attribution="per_example", share_rule="gradient")
    store = ResponsibilityStore.create(tmp_path / "p.zarr", rspec, layout=Layout(chunk_steps=2), labels=y.numpy())
    rec = Recorder(store, [(spec, out.weight)], background=False)
    grads = ExampleGradients([(spec, out, "weight")])
    grads.attach()
    opt = torch.optim.SGD([*hidden.parameters(), *out.parameters()], lr=0.3)
    seen = []  # (step, epoch, ids, the inputs fed to out)
    for epoch in range(epochs):
        for ids in torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).split(batch):
            h = torch.relu(hidden(x[ids]))
            seen.append((len(seen), epoch, ids.numpy(), h.detach().double().numpy()))
            opt.zero_grad()
            torch.nn.functional.cross_entropy(out(h), y[ids]).backward()
            rec.snapshot()
            opt.step()
            rec.record_step(ids, epoch=epoch, examples=grads.take())
    rec.close()
    return store, y.numpy(), seen


def _last_inputs(seen, n, steps):
    want = np.full((n, 4), np.nan)
    for step, _, ids, h in seen:
        if steps[0] <= step < steps[1]:
            want[ids] = h  # later steps overwrite earlier ones: each example's last visit
    return want


def test_recorded_inputs_are_the_inputs_at_each_examples_last_step(tmp_path):
    store, _, seen = _probe_run(tmp_path)
    n = store.num_examples
    np.testing.assert_allclose(recorded_inputs(store, "out.weight"), _last_inputs(seen, n, (0, store.steps)), rtol=1e-6)
    first = store.epoch_steps(0)
    # A budget of one row per block walks the journal one step at a time.
    got = recorded_inputs(store, "out.weight", steps=first, budget_bytes=1)
    np.testing.assert_allclose(got, _last_inputs(seen, n, first), rtol=1e-6)
    with pytest.raises(ValueError, match="in no step"):
        recorded_inputs(store, "out.weight", steps=(0, 2))  # 8 of the 30 examples
    with pytest.raises(IndexError):
        recorded_inputs(store, "out.weight", steps=(0, store.steps + 1))


def test_held_out_loss_equals_a_cross_fit_by_hand(tmp_path):
    linear_model = pytest.importorskip("sklearn.linear_model")
    store, y, seen = _probe_run(tmp_path)
    n, folds, c = store.num_examples, 3, 0.5
    x = _last_inputs(seen, n, (0, store.steps))
    x = (x - x.mean(0)) / x.std(0)

    def by_hand(labels):
        fold = np.random.default_rng(7).permutation(n) % folds  # the documented folds
        want = np.zeros(n)
        for k in range(folds):
            fit = linear_model.LogisticRegression(C=c, tol=1e-10, max_iter=10_000)
            fit.fit(x[fold != k], labels[fold != k])
            want[fold == k] = -np.log(fit.predict_proba(x[fold == k])[np.arange((fold == k).sum()), labels[fold == k]])
        return want

    np.testing.assert_allclose(held_out_loss(store, folds=folds, c=c, seed=7), by_hand(y), rtol=1e-4, atol=1e-6)
    flipped = y.copy()
    flipped[:6] = (y[:6] + 1) % 3  # labels given as an argument are the ones fitted and scored
    got = held_out_loss(store, labels=flipped, folds=folds, c=c, seed=7)
    np.testing.assert_allclose(got, by_hand(flipped), rtol=1e-4, atol=1e-6)


def test_held_out_loss_errors(tmp_path):
    store, _, _ = _probe_run(tmp_path)
    for bad in (dict(folds=1), dict(folds=store.num_examples + 1)):
        with pytest.raises(ValueError, match="folds"):
            held_out_loss(store, **bad)
    with pytest.raises(ValueError, match="c must be positive"):
        held_out_loss(store, c=0.0)
    uniform = _store(tmp_path, [([0], [1.0, 1.0]), ([1, 2, 3], [-1.0, 0.5])])
    with pytest.raises(LayerSelectionError, match="per-example"):
        held_out_loss(uniform)
    with pytest.raises(LayerSelectionError, match="per-example"):
        recorded_inputs(uniform, "w")
