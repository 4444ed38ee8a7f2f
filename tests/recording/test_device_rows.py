"""Rows formed in batched kernels (the GPU path) against a float64 loop over parameters and units.

The class is device-agnostic; here it runs on the CPU, so the grouping, column placement and signs are checked
on every machine (tests/callbacks/test_cuda.py runs it through the Recorder on a GPU).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from responsibility.recording import device_rows
from responsibility.recording.device_rows import DeviceRows
from responsibility.store.spec import ParamSpec, RecordingSpec

# Two parameters share unit width 8 (reduced as one block), two are 1-D (width 1), one has width 6, two are
# journaled per weight.
SHAPES = {
    "a.weight": ((6, 8), "neuron"),
    "a.bias": ((6,), "neuron"),
    "b.weight": ((5, 2, 2, 2), "neuron"),
    "b.bias": ((5,), "neuron"),
    "c.weight": ((3, 6), "neuron"),
    "d.weight": ((4, 3), "weight"),
    "d.bias": ((4,), "weight"),
}


def _tracked(spec: RecordingSpec, values: list[torch.Tensor]):
    columns = spec.journal_columns()
    return [(s, torch.nn.Parameter(v.clone()), columns[s.name]) for s, v in zip(spec.params, values, strict=True)]


def test_rows_match_a_float64_loop_over_units():
    g = torch.Generator().manual_seed(0)
    specs = [ParamSpec(name, shape, gran) for name, (shape, gran) in SHAPES.items()]
    spec = RecordingSpec(params=tuple(specs), num_examples=10)
    columns = spec.journal_columns()
    before = [torch.randn(s.shape, generator=g) for s in specs]
    # Changes over many orders of magnitude and of both signs, some exactly zero.
    after = [b + torch.randn(b.shape, generator=g) * 10.0 ** torch.randint(-6, 3, b.shape, generator=g) for b in before]
    after[0].view(-1)[:5] = before[0].view(-1)[:5]
    tracked = _tracked(spec, before)
    rows = DeviceRows(tracked, spec.journal_width)
    rows.snapshot()
    for (_, param, _), value in zip(tracked, after, strict=True):
        param.data.copy_(value)
    row = torch.full((spec.journal_width,), float("nan"))
    rows.form(row)

    want = np.full(spec.journal_width, np.nan)
    for s, p, q in zip(specs, after, before, strict=True):
        d = p.double().numpy() - q.double().numpy()
        cols = columns[s.name]
        if s.granularity == "weight":
            want[cols["delta"]] = d.reshape(-1)
        else:
            d = d.reshape(s.units, -1)
            want[cols["pos"]] = np.where(d > 0, d, 0).sum(1)
            want[cols["neg"]] = -np.where(d < 0, d, 0).sum(1)
    assert not np.isnan(want).any()
    np.testing.assert_allclose(row.numpy(), want, rtol=1e-6, atol=1e-12)
    # Weight columns are the float32 difference itself.
    d = columns["d.weight"]["delta"]
    assert torch.equal(row[d], (after[5] - before[5]).view(-1))


def test_snapshots_are_the_parameters_and_no_change_is_positive_zero():
    specs = [ParamSpec(name, shape, gran) for name, (shape, gran) in SHAPES.items()]
    spec = RecordingSpec(params=tuple(specs), num_examples=10)
    values = [torch.randn(s.shape, generator=torch.Generator().manual_seed(i)) for i, s in enumerate(specs)]
    tracked = _tracked(spec, values)
    rows = DeviceRows(tracked, spec.journal_width)
    rows.snapshot()
    for snap, value in zip(rows.snapshots, values, strict=True):
        assert torch.equal(snap, value) and snap.shape == value.shape
    row = torch.full((spec.journal_width,), float("nan"))
    rows.form(row)  # nothing changed
    assert torch.equal(row, torch.zeros(spec.journal_width))
    columns = spec.journal_columns()
    signed = [columns[s.name]["pos" if s.granularity == "neuron" else "delta"] for s in specs]
    assert not torch.signbit(torch.cat([row[c] for c in signed])).any()


def test_applies_to_float32_weights_on_one_accelerator_only():
    assert not DeviceRows.applies([torch.zeros(3), torch.zeros(2)])  # the CPU keeps its per-parameter path
    assert not DeviceRows.applies([])
    meta = [torch.zeros(3, device="meta"), torch.zeros(2, device="meta")]
    assert DeviceRows.applies(meta)
    assert not DeviceRows.applies([meta[0], torch.zeros(2, device="meta", dtype=torch.bfloat16)])
    assert not DeviceRows.applies([meta[0], torch.zeros(2)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need CUDA")
def test_cuda_graphs_form_the_rows_plain_launches_form():
    """Rows from replayed CUDA graphs equal rows from plain launches, bit for bit, also after a parameter's storage
    changes (the graphs then stand down)."""
    specs = [ParamSpec(name, shape, gran) for name, (shape, gran) in SHAPES.items()]
    spec = RecordingSpec(params=tuple(specs), num_examples=10)
    g = torch.Generator().manual_seed(3)
    start = [torch.randn(s.shape, generator=g) for s in specs]
    runs = {}
    for graphs in (True, False):
        tracked = [(s, torch.nn.Parameter(p.cuda()), c) for s, p, c in _tracked(spec, start)]
        runs[graphs] = (tracked, DeviceRows(tracked, spec.journal_width, graphs=graphs))
    steps = device_rows.EAGER_STEPS + 4
    rows = {graphs: torch.zeros(steps, spec.journal_width).pin_memory() for graphs in runs}
    for t in range(steps):
        updates = [torch.randn(s.shape, generator=g).cuda() * 10.0 ** -(t % 5) for s in specs]
        for graphs, (tracked, device) in runs.items():
            if t == steps - 1:  # new storage for one parameter, same values
                tracked[0][1].data = tracked[0][1].data.clone()
            device.snapshot()
            with torch.no_grad():
                for (_, param, _), u in zip(tracked, updates, strict=True):
                    param.add_(u)
            device.form(rows[graphs][t])
    torch.cuda.synchronize()
    assert runs[True][1]._graphs is None and not runs[True][1]._graphs_on  # stood down at the last step
    assert torch.equal(rows[True].view(torch.int32), rows[False].view(torch.int32))
    assert rows[True].abs().sum() > 0
