"""The fold keeps what it reads and sums within its memory budget: R blocks and journal reads sized from it."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import IndexedData, TinyNet, make_trainer
from torch.utils.data import DataLoader

from responsibility import ResponsibilityCallback, ResponsibilityStore
from responsibility.store._arrays import Arrays


@pytest.mark.parametrize("granularity", ["weight", "neuron"])  # "outer"/"dense" and "units" per-example forms
def test_per_example_reads_stay_within_the_fold_budget(tmp_path, monkeypatch, granularity):
    # One-step journal chunks, so the budget, not the chunking, decides how many steps are read at once.
    cb = ResponsibilityCallback(
        tmp_path / "s.zarr", granularity=granularity, attribution="per_example", journal_buffer_mb=1e-4, fold="never"
    )
    loader = DataLoader(IndexedData(48), batch_size=8, shuffle=True)
    make_trainer(tmp_path, [cb], max_epochs=3).fit(TinyNet(), loader)
    store = ResponsibilityStore.open(tmp_path / "s.zarr", mode="r+")
    assert store.layout.chunk_steps == 1 and store.steps == 18
    want = {name: store.read(name) for name in store.parameters}  # lazily, in one piece

    reads: list[tuple[str, int]] = []
    read = Arrays.read

    def spy(self, arr, rows, cols, unwritten=None):
        out = read(self, arr, rows, cols, unwritten)
        reads.append((arr.path, out.nbytes))
        return out

    monkeypatch.setattr(Arrays, "read", spy)
    budget = 2048
    store.fold(budget_bytes=budget)
    examples = [nbytes for path, nbytes in reads if path.endswith("examples")]
    assert examples and max(examples) <= budget // 8  # a quarter of the half the fold leaves to the journal
    assert len(examples) > len(store.parameters)  # so the budget really cut the steps into several reads
    for name, r in want.items():
        np.testing.assert_allclose(store.read(name), r, rtol=1e-6, atol=1e-9)
