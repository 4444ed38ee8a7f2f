"""DDP (ddp_spawn, 2 CPU processes, gloo): ids gathered across ranks, one writer, same R as one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import IndexedData, TinyNet, make_trainer
from torch.utils.data import DataLoader

from responsibility import ResponsibilityCallback, ResponsibilityStore

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


class FixedBatches(torch.utils.data.Sampler[list[int]]):
    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _one_process_on_the_same_batches(tmp_path, data, ddp: ResponsibilityStore, attribution: str):
    """One process trained from the same seed on the global batches the DDP run recorded, in the same order, with
    the same journal."""
    ids, counts = ddp.membership()
    batches = np.split(ids, np.cumsum(counts)[:-1])
    delta = ddp.layout.journal_delta
    single = ResponsibilityCallback(tmp_path / "one.zarr", attribution=attribution, journal_delta=delta)
    torch.manual_seed(0)
    make_trainer(tmp_path, [single], max_epochs=1).fit(
        TinyNet(), DataLoader(data, batch_sampler=FixedBatches([b.tolist() for b in batches]))
    )
    one = ResponsibilityStore.open(tmp_path / "one.zarr")
    np.testing.assert_array_equal(one.membership()[0], ids)
    return one


@pytest.mark.parametrize("n", [48, 47])  # 47: the DistributedSampler pads by repeating an id
def test_ddp_store_equals_single_process_on_same_global_batches(tmp_path, n):
    data = IndexedData(n)
    cb = ResponsibilityCallback(tmp_path / "ddp.zarr", attribution="uniform")
    torch.manual_seed(0)
    make_trainer(tmp_path, [cb], max_epochs=2, strategy="ddp_spawn", devices=2).fit(
        TinyNet(), DataLoader(data, batch_size=4, shuffle=True)
    )
    ddp = ResponsibilityStore.open(tmp_path / "ddp.zarr")
    ids, counts = ddp.membership()
    assert counts.tolist() == [8] * 6 * 2
    per_epoch = ids.reshape(2, -1)
    for epoch in per_epoch:  # each epoch covers the data set, padded to a multiple of the world size
        assert set(epoch.tolist()) == set(range(n))
        assert len(epoch) == 48
    one = _one_process_on_the_same_batches(tmp_path, data, ddp, "uniform")
    for name in ddp.parameters:
        # Gradients are all-reduced across ranks, so Δw agrees to float32 rounding, not bit for bit.
        np.testing.assert_allclose(ddp.read(name), one.read(name), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(("n", "journal_delta"), [(48, "stored"), (47, "stored"), (47, "derived")])
def test_ddp_per_example_equals_single_process_and_sums_to_the_weight_change(tmp_path, n, journal_delta):
    """Each rank's per-example values are gathered with its ids: the shares of the global batch equal those of one
    process stepping on the same global batches (itself checked against a float64 reference), and over the run the
    signed R of all examples adds up to the weights' total change. A derived journal checks Δw against the gathered
    gradients: DDP averages the ranks' gradients, so c = -lr / 2."""
    data = IndexedData(n)
    cb = ResponsibilityCallback(tmp_path / "ddp.zarr", attribution="per_example", journal_delta=journal_delta)
    torch.manual_seed(0)
    model = TinyNet()
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    make_trainer(tmp_path, [cb], max_epochs=2, strategy="ddp_spawn", devices=2).fit(
        model, DataLoader(data, batch_size=4, shuffle=True)
    )
    ddp = ResponsibilityStore.open(tmp_path / "ddp.zarr")
    assert ddp.spec.attribution == "per_example"
    scales = ddp.journal_scales()
    if journal_delta == "derived":
        assert scales is not None
        np.testing.assert_allclose(scales, -0.1 / 2, rtol=1e-5)  # TinyNet's lr 0.1; every step derived
    ids, counts = ddp.membership()
    assert counts.tolist() == [8] * 6 * 2
    for name, value in model.state_dict().items():  # ddp_spawn hands the trained weights back
        signed = (ddp.read(name, "pos") - ddp.read(name, "neg")).sum(0, dtype=np.float64)
        np.testing.assert_allclose(signed, (value - start[name]).numpy(), rtol=1e-4, atol=1e-6, err_msg=name)

    one = _one_process_on_the_same_batches(tmp_path, data, ddp, "per_example")
    for name in ddp.parameters:
        for sign in ("pos", "neg"):
            want = one.read(name, sign)
            np.testing.assert_allclose(ddp.read(name, sign), want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
