"""The default fold kernel against naive loops: same float additions in the same order, whichever path it takes.

Float32 addition is not associative, and the data here spans many orders of magnitude, so a kernel that adds in
another order, drops or repeats an addition, or rounds a product differently gives other bits. Bits are compared
as int32, so -0.0 differs from +0.0 and NaN payloads must match.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from responsibility.kernels import index_add_fold, plain_index_add, split_signed, step_groups
from responsibility.kernels import scatter as fold

# Each way of adding (the result must not depend on which is taken).
PATHS = {
    "cost model": index_add_fold,
    "dense rounds": functools.partial(index_add_fold, dense_fraction=0.0),
    "scatter only": functools.partial(index_add_fold, dense_fraction=2.0),
    "dense then scatter, tiny slices": functools.partial(index_add_fold, dense_fraction=0.5, block_bytes=1),
    # What index_add_fold does on an accelerator, run here on the CPU.
    "distinct rounds": functools.partial(fold._distinct_rounds, block_bytes=fold.DEVICE_BLOCK_BYTES),
    "distinct rounds, tiny slices": functools.partial(fold._distinct_rounds, block_bytes=1),
}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def assert_bits_equal(got: torch.Tensor, want: torch.Tensor) -> None:
    differ = (bits(got) != bits(want)).nonzero()
    assert len(differ) == 0, f"{len(differ)} cells differ, first at {differ[0].tolist()}"


def naive_loop(
    acc: np.ndarray, rows: np.ndarray, ids: np.ndarray, row_of_id: np.ndarray, scale: np.ndarray | None
) -> np.ndarray:
    """``acc[ids[j]] += scale[j] * rows[row_of_id[j]]`` one j at a time, in the dtype of ``acc``."""
    out = acc.copy()
    for j, (m, t) in enumerate(zip(ids.tolist(), row_of_id.tolist(), strict=True)):
        src = rows[t].astype(out.dtype)
        if scale is not None:
            src = src * out.dtype.type(scale[j])
        out[m] = out[m] + src
    return out


def signed_rows(rng: np.random.Generator, steps: int, width: int) -> np.ndarray:
    """Δw-like rows over twelve orders of magnitude, with exact zeros."""
    rows = rng.standard_normal((steps, width)).astype(np.float32)
    rows *= (10.0 ** rng.uniform(-6, 6, (steps, 1))).astype(np.float32)
    rows[rng.random((steps, width)) < 0.3] = 0.0
    return rows


def epochs_membership(
    rng: np.random.Generator, n: int, batch: int, epochs: float, repeats_in_step: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Ids of shuffled epochs (a fractional last one) cut into batches, some ids repeated within their step."""
    ids = np.concatenate([rng.permutation(n) for _ in range(int(np.ceil(epochs)))])[: int(epochs * n)]
    steps = [ids[b : b + batch] for b in range(0, len(ids), batch)]
    steps = [np.concatenate([s, rng.choice(s, repeats_in_step)]) if len(s) else s for s in steps]
    counts = np.array([len(s) for s in steps], dtype=np.int64)
    return np.concatenate(steps).astype(np.int64), counts


def case(
    seed: int, n: int, width: int, epochs: float, batch: int = 7, repeats_in_step: int = 1, mean: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(acc, rows, ids, row_of_id, scale): |Δw| rows, membership, and the mean share 1/batch size when ``mean``."""
    rng = np.random.default_rng(seed)
    ids, counts = epochs_membership(rng, n, batch, epochs, repeats_in_step)
    pos, _ = split_signed(torch.from_numpy(signed_rows(rng, len(counts), width)))
    counts_t = torch.from_numpy(counts)
    row_of_id = torch.repeat_interleave(torch.arange(len(counts)), counts_t)
    scale = (1.0 / counts_t.to(torch.float32)).repeat_interleave(counts_t) if mean else None
    acc = torch.from_numpy(rng.random((n, width), dtype=np.float32))  # as after an earlier fold
    return acc, pos, torch.from_numpy(ids), row_of_id, scale


@pytest.mark.parametrize("path", PATHS)
# Both sides of the width from which scattered rows are sorted by example first.
@pytest.mark.parametrize("width", [1, 5, 64, fold.SORTED_SCATTER_WIDTH + 3])
@pytest.mark.parametrize("mean", [False, True], ids=["sum", "mean"])
def test_matches_naive_float32_loop_and_float64_sum(path, width, mean):
    acc, rows, ids, row_of_id, scale = case(seed=width, n=37, width=width, epochs=3.4, mean=mean)
    args = (ids.numpy(), row_of_id.numpy(), None if scale is None else scale.numpy())
    want32 = naive_loop(acc.numpy(), rows.numpy(), *args)
    want64 = naive_loop(acc.numpy().astype(np.float64), rows.numpy(), *args)
    PATHS[path](acc, rows, ids, row_of_id, scale)
    assert_bits_equal(acc, torch.from_numpy(want32))
    # Non-negative terms: float32 running sums stay within a few ulps per addition of the exact sum.
    np.testing.assert_allclose(acc.numpy(), want64, rtol=2e-6 * 20, atol=0)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "n,width,epochs,batch",
    [
        (300, 33, 4.3, 16),  # several rounds, then a scatter tail
        (200, 300, 3.7, 16),  # the same with rows wide enough to be sorted before scattering
        (50, 700, 1.0, 8),  # one full round of distinct ids
        (2000, 3, 0.02, 5),  # few ids: the scatter path
        (64, 2, 9.0, 64),  # every example in every step
    ],
)
def test_bit_identical_to_plain_index_add(path, n, width, epochs, batch):
    acc, rows, ids, row_of_id, scale = case(seed=n + width, n=n, width=width, epochs=epochs, batch=batch)
    want = acc.clone()
    plain_index_add(want, rows, ids, row_of_id, scale)
    PATHS[path](acc, rows, ids, row_of_id, scale)
    assert_bits_equal(acc, want)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("epochs", [1.0, 0.9])
def test_wide_rows_of_distinct_ids_are_bit_identical(path, epochs):
    """A group without repeats is the one case where wide rows take a dense round."""
    width = fold.SORTED_SCATTER_WIDTH + 5
    acc, rows, ids, row_of_id, scale = case(seed=12, n=80, width=width, epochs=epochs, repeats_in_step=0)
    want = acc.clone()
    plain_index_add(want, rows, ids, row_of_id, scale)
    PATHS[path](acc, rows, ids, row_of_id, scale)
    assert_bits_equal(acc, want)


@pytest.mark.parametrize("path", PATHS)
def test_scale_that_varies_within_a_step(path):
    """The kernel contract is one scale per id, not per step."""
    acc, rows, ids, row_of_id, _ = case(seed=3, n=40, width=9, epochs=3.0)
    scale = torch.from_numpy(np.random.default_rng(4).uniform(0.01, 100.0, len(ids)).astype(np.float32))
    want = acc.clone()
    plain_index_add(want, rows, ids, row_of_id, scale)
    PATHS[path](acc, rows, ids, row_of_id, scale)
    assert_bits_equal(acc, want)


@pytest.mark.parametrize("path", PATHS)
def test_folding_in_pieces_equals_folding_at_once(path):
    acc, rows, ids, row_of_id, scale = case(seed=5, n=60, width=17, epochs=5.5)
    at_once = acc.clone()
    index_add_fold(at_once, rows, ids, row_of_id, scale)
    counts = torch.bincount(row_of_id, minlength=len(rows))
    offsets = [0, *torch.cumsum(counts, 0).tolist()]
    for max_ids in (1, 23, 150):
        pieces = acc.clone()
        for g0, g1 in step_groups(counts, max_ids):
            j = slice(offsets[g0], offsets[g1])
            PATHS[path](pieces, rows, ids[j], row_of_id[j], scale[j])
        assert_bits_equal(pieces, at_once)


@pytest.mark.parametrize("path", PATHS)
def test_order_of_additions_to_one_example_is_kept(path):
    """2 + 2 + 2 + 2 + 1e8 is 100000008 in float32; 1e8 + 2 + 2 + 2 + 2 stays 100000000 (ulp 8)."""
    rows = torch.tensor([[2.0], [2.0], [2.0], [2.0], [1e8]])
    ids = torch.tensor([0, 1, 0, 0, 1, 0, 0, 1])
    row_of_id = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4])
    acc = torch.zeros(2, 1)
    PATHS[path](acc, rows, ids, row_of_id, None)
    assert acc[0, 0].item() == 100000008.0
    reverse = torch.zeros(2, 1)
    PATHS[path](reverse, rows, ids.flip(0), row_of_id.flip(0), None)
    assert reverse[0, 0].item() == 100000000.0


def test_random_cases_are_order_sensitive():
    """Guard for the tests above: reversing the additions changes the bits of the data they use."""
    acc, rows, ids, row_of_id, scale = case(seed=300 + 33, n=300, width=33, epochs=4.3, batch=16)
    forward, backward = acc.clone(), acc.clone()
    plain_index_add(forward, rows, ids, row_of_id, scale)
    plain_index_add(backward, rows, ids.flip(0), row_of_id.flip(0), scale.flip(0))
    assert (bits(forward) != bits(backward)).sum() > 100


@pytest.mark.parametrize("path", PATHS)
def test_special_values_and_untouched_rows_keep_their_bits(path):
    """-0.0, NaN and inf in the accumulator and in the rows; examples absent from the group stay as they were."""
    n, width = 30, 4
    acc, rows, ids, row_of_id, scale = case(seed=7, n=n, width=width, epochs=2.5)
    acc[::3, 0] = -0.0
    acc[1, 1] = float("nan")
    acc[2, 2] = float("inf")
    acc[4] = torch.tensor([-0.0, float("nan"), float("-inf"), -0.0])
    rows[0, :] = -0.0  # what split_signed gives for the negative part of a positive Δw
    rows[1, 3] = float("inf")
    keep = ids != 4
    ids, row_of_id, scale = ids[keep], row_of_id[keep], scale[keep]
    want = acc.clone()
    plain_index_add(want, rows, ids, row_of_id, scale)
    PATHS[path](acc, rows, ids, row_of_id, scale)
    assert_bits_equal(acc, want)
    assert bits(acc[4]).eq(bits(want[4])).all()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("steps", [0, 3], ids=["no rows", "rows"])
def test_empty_group_changes_nothing(path, steps):
    acc = torch.rand(5, 3)
    want = acc.clone()
    empty = torch.empty(0, dtype=torch.int64)
    PATHS[path](acc, torch.rand(steps, 3), empty, empty, torch.empty(0))
    PATHS[path](acc, torch.rand(steps, 3), empty, empty, None)
    assert_bits_equal(acc, want)


def test_cost_model_takes_dense_rounds_only_where_they_pay(monkeypatch):
    """A narrow group covering every example several times is added in dense rounds; a few ids of a wide one not."""
    rounds: list[int] = []
    dense_round = fold._dense_round

    def counting(acc, padded, ids, *args):
        rounds.append(len(ids))
        dense_round(acc, padded, ids, *args)

    monkeypatch.setattr(fold, "_dense_round", counting)
    acc, rows, ids, row_of_id, scale = case(seed=8, n=500, width=64, epochs=3.0, repeats_in_step=0)
    index_add_fold(acc, rows, ids, row_of_id, scale)
    assert rounds == [500, 500, 500]
    rounds.clear()
    acc, rows, ids, row_of_id, scale = case(seed=9, n=500, width=4096, epochs=0.3, repeats_in_step=0)
    index_add_fold(acc, rows, ids, row_of_id, scale)
    assert rounds == []
    # Wide rows are scattered sorted by example, one pass over repeated examples: a round only for a whole group.
    wide = fold.SORTED_SCATTER_WIDTH
    acc, rows, ids, row_of_id, scale = case(seed=10, n=500, width=wide, epochs=1.0, repeats_in_step=0)
    index_add_fold(acc, rows, ids, row_of_id, scale)
    assert rounds == [500]
    rounds.clear()
    acc, rows, ids, row_of_id, scale = case(seed=11, n=500, width=wide, epochs=3.0, repeats_in_step=0)
    index_add_fold(acc, rows, ids, row_of_id, scale)
    assert rounds == []


@pytest.mark.parametrize("width", [2, fold.SORTED_SCATTER_WIDTH])
def test_out_of_range_ids_are_refused(width):
    acc = torch.zeros(3, width)
    for bad in (3, -1):
        for fold_path in PATHS.values():
            with pytest.raises((IndexError, RuntimeError)):
                fold_path(acc, torch.ones(1, width), torch.tensor([0, bad]), torch.tensor([0, 0]), None)
