"""The fused Triton fold against the CPU's chronological ``index_add_``: the same float32 additions in the same order,
so the same bits (compared as int32: -0.0 differs from +0.0).

Where it runs: on a CUDA device when Triton is importable; else, if Triton is importable at all, the same tests run
in a subprocess on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``, which must be set before Triton is
imported); else they skip. Tests of the wiring into :func:`index_add_fold` and of 64-bit offsets need CUDA.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT

from responsibility.kernels import index_add_fold, plain_index_add, triton_fold

INTERPRETED = triton_fold.HAVE_TRITON and os.environ.get("TRITON_INTERPRET") == "1"
ON_CUDA = triton_fold.triton_available(torch.device("cuda")) and torch.cuda.is_available() and not INTERPRETED
DEVICE = torch.device("cuda" if ON_CUDA else "cpu")
runs_here = pytest.mark.skipif(
    not (ON_CUDA or INTERPRETED),
    reason="needs Triton and a CUDA device, or TRITON_INTERPRET=1 (test_under_the_interpreter_in_a_subprocess)",
)
needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="needs Triton and a CUDA device")


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.cpu().contiguous().view(torch.int32)


def fused_equals_chronological_cpu_fold(
    acc: torch.Tensor,
    rows: torch.Tensor,
    ids: torch.Tensor,
    row_of_id: torch.Tensor,
    scale: torch.Tensor | None = None,
) -> None:
    """Fold on ``DEVICE`` with the fused kernel and on the CPU with one ``index_add_``; assert the same bits."""
    want = acc.clone()
    plain_index_add(want, rows, ids, row_of_id, scale)
    got = acc.to(DEVICE)
    on = None if scale is None else scale.to(DEVICE)
    triton_fold.fused_fold(got, rows.to(DEVICE), ids.to(DEVICE), row_of_id.to(DEVICE), on)
    assert torch.equal(bits(got), bits(want)), f"{int((bits(got) != bits(want)).sum())} cells differ"


def case(
    seed: int, n: int, width: int, epochs: int, batch: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(acc, rows, ids, row_of_id): ``epochs`` shuffled epochs in one group; signed rows over twelve orders of
    magnitude with zeros, -0.0 and subnormals; a non-zero accumulator with -0.0 cells."""
    rng = np.random.default_rng(seed)
    ids = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    steps = -(-len(ids) // batch)
    rows = rng.standard_normal((steps, width)).astype(np.float32)
    rows *= (10.0 ** rng.uniform(-6, 6, (steps, 1))).astype(np.float32)
    rows[rng.random((steps, width)) < 0.2] = 0.0
    rows[rng.random((steps, width)) < 0.05] = -0.0
    rows[rng.random((steps, width)) < 0.02] = np.float32(3e-39)  # subnormal: a flush to zero would show
    acc = rng.standard_normal((n, width)).astype(np.float32)
    acc[rng.random((n, width)) < 0.1] = -0.0
    row_of_id = np.arange(len(ids)) // batch
    return torch.from_numpy(acc), torch.from_numpy(rows), torch.from_numpy(ids), torch.from_numpy(row_of_id)


def test_the_cases_are_order_sensitive():
    """Guard for the tests below: adding each example's rows in reverse changes the bits of their data."""
    acc, rows, ids, row_of_id = case(seed=300, n=60, width=300, epochs=3)
    forward, backward = acc.clone(), acc.clone()
    plain_index_add(forward, rows, ids, row_of_id)
    plain_index_add(backward, rows, ids.flip(0), row_of_id.flip(0))
    assert (bits(forward) != bits(backward)).sum() > 100


@runs_here
# Not multiples of the block (the widest is more than one block of MAX_BLOCK_P columns).
@pytest.mark.parametrize("width", [1, 7, 300, 1000, 2 * triton_fold.MAX_BLOCK_P + 3])
def test_three_epochs_in_one_group(width):
    fused_equals_chronological_cpu_fold(*case(seed=width, n=60, width=width, epochs=3))


@runs_here
@pytest.mark.parametrize("width", [7, 300])
def test_scaled_rows_are_multiplied_then_added_each_rounded(width):
    """Per-example shares: each product is rounded before its sum, as on the CPU (an FMA would round once)."""
    acc, rows, ids, row_of_id = case(seed=width + 1, n=60, width=width, epochs=3)
    scale = torch.from_numpy(np.random.default_rng(width).random(len(ids), dtype=np.float32))
    fused_equals_chronological_cpu_fold(acc, rows, ids, row_of_id, scale)


@runs_here
def test_ids_of_a_few_examples_repeated_many_times():
    acc, rows, _, _ = case(seed=1, n=40, width=33, epochs=1)
    rng = np.random.default_rng(2)
    ids = torch.from_numpy(rng.choice([3, 17, 39], 90))
    row_of_id = torch.from_numpy(rng.integers(0, len(rows), 90))
    fused_equals_chronological_cpu_fold(acc, rows, ids, row_of_id)


@runs_here
def test_order_of_additions_to_one_example_is_kept():
    """2 + 2 + 2 + 2 + 1e8 is 100000008 in float32; 1e8 + 2 + 2 + 2 + 2 stays 100000000 (ulp 8)."""
    rows = torch.tensor([[2.0], [2.0], [2.0], [2.0], [1e8]])
    ids = torch.tensor([0, 1, 0, 0, 1, 0, 0, 1])
    row_of_id = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4])
    acc = torch.zeros(2, 1, device=DEVICE)
    triton_fold.fused_fold(acc, rows.to(DEVICE), ids.to(DEVICE), row_of_id.to(DEVICE))
    assert acc[0, 0].item() == 100000008.0
    fused_equals_chronological_cpu_fold(torch.zeros(2, 1), rows, ids, row_of_id)


@runs_here
def test_column_slices_and_strided_rows():
    """An accumulator that is a column slice of a wider R (as ``store.fold()`` may pass) is written in place, its
    other columns untouched; rows whose columns are not contiguous are read right."""
    acc, rows, ids, row_of_id = case(seed=4, n=50, width=40, epochs=2)
    wide = acc.to(DEVICE)
    want = acc.clone()
    plain_index_add(want[:, 5:30], rows[:, 5:30].contiguous(), ids, row_of_id)
    transposed_rows = rows[:, 5:30].t().contiguous().t()  # column stride != 1
    triton_fold.fused_fold(wide[:, 5:30], transposed_rows.to(DEVICE), ids.to(DEVICE), row_of_id.to(DEVICE))
    assert torch.equal(bits(wide), bits(want))


@runs_here
@pytest.mark.parametrize("steps", [0, 3], ids=["no rows", "rows"])
def test_empty_group_changes_nothing(steps):
    acc = torch.rand(5, 3, device=DEVICE)
    want = acc.clone()
    empty = torch.empty(0, dtype=torch.int64, device=DEVICE)
    triton_fold.fused_fold(acc, torch.rand(steps, 3, device=DEVICE), empty, empty)
    assert torch.equal(bits(acc), bits(want))


@runs_here
@pytest.mark.parametrize(
    "ids,row_of_id", [([0, 3], [0, 0]), ([0, -1], [0, 0]), ([0, 1], [0, 1]), ([0, 1], [-1, 0])], ids=str
)
def test_out_of_range_is_refused_before_writing(ids, row_of_id):
    acc = torch.zeros(3, 4, device=DEVICE)
    with pytest.raises(IndexError):
        triton_fold.fused_fold(
            acc,
            torch.ones(1, 4, device=DEVICE),
            torch.tensor(ids, device=DEVICE),
            torch.tensor(row_of_id, device=DEVICE),
        )
    assert not acc.any()


@needs_cuda
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "rounds"])
def test_index_add_fold_on_cuda_equals_the_cpu_fold(monkeypatch, fused):
    """Both CUDA paths, unscaled and scaled, with subnormal values (CUDA's atomic adds would flush them to zero):
    the CPU's bits. Without Triton (or for float64) the rounds of distinct ids run."""
    calls = []
    kernel = triton_fold.fused_fold

    def counted(*args):
        calls.append(1)
        kernel(*args)

    monkeypatch.setattr(triton_fold, "fused_fold", counted)
    if not fused:
        monkeypatch.setattr(triton_fold, "HAVE_TRITON", False)
    acc, rows, ids, row_of_id = case(seed=5, n=500, width=129, epochs=3)
    for scale in (None, torch.rand(len(ids))):
        want = acc.clone()
        plain_index_add(want, rows, ids, row_of_id, scale)
        got = acc.cuda()
        index_add_fold(got, rows.cuda(), ids.cuda(), row_of_id.cuda(), None if scale is None else scale.cuda())
        assert torch.equal(bits(got), bits(want)), f"scaled: {scale is not None}"
    assert len(calls) == (2 if fused else 0)
    want64 = acc.double()
    plain_index_add(want64, rows.double(), ids, row_of_id)
    got64 = acc.cuda().double()
    index_add_fold(got64, rows.cuda().double(), ids.cuda(), row_of_id.cuda())
    assert len(calls) == (2 if fused else 0)  # float64 takes the rounds
    assert torch.equal(got64.cpu(), want64)


@needs_cuda
def test_offsets_past_two_to_the_31_cells():
    """Rows of an accumulator beyond 2**31 cells (8.6 GB): 32-bit offsets would wrap to other rows."""
    n, width = 2**31 // 4096 + 100, 4096
    if torch.cuda.get_device_properties(0).total_memory < 3 * n * width * 4:
        pytest.skip("needs about 26 GB of device memory")
    acc = torch.zeros(n, width, device="cuda")
    _, rows, _, _ = case(seed=6, n=48, width=width, epochs=1)  # 6 rows
    ids = torch.tensor([n - 1, n - 50, 0, n - 1, n - 50, n - 1])
    row_of_id = torch.arange(6)
    touched = ids.unique()
    want = torch.zeros(len(touched), width)  # the touched rows only
    plain_index_add(want, rows, torch.searchsorted(touched, ids), row_of_id)
    triton_fold.fused_fold(acc, rows.cuda(), ids.cuda(), row_of_id.cuda())
    assert torch.equal(bits(acc[touched.cuda()]), bits(want))
    assert int(acc.count_nonzero()) == int(want.count_nonzero())  # nothing written elsewhere


@pytest.mark.skipif(ON_CUDA or INTERPRETED, reason="the tests above ran in this process")
@pytest.mark.skipif(not triton_fold.HAVE_TRITON, reason="Triton is not importable: the fused kernel is not checked")
def test_under_the_interpreter_in_a_subprocess():
    """Triton reads TRITON_INTERPRET when a kernel is defined, so the CPU run needs a fresh interpreter."""
    spec = importlib.util.find_spec("triton")
    assert spec is not None and spec.origin is not None
    site = str(Path(spec.origin).parents[1])  # where this process found Triton, for the child too
    path = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "not in_a_subprocess"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    lines = run.stdout.strip().splitlines()
    assert re.search(r"[1-9]\d* passed", lines[-1]), lines[-1]
    skips = [line for line in lines if line.startswith("SKIPPED")]
    assert all("needs Triton and a CUDA device" in line for line in skips), skips  # only the CUDA-only tests
