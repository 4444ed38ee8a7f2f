"""Tests of responsibility.experiments.datasets: IDX reading, Fashion-MNIST lookup, subsets, label noise, digits."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, write_fake_fashion, write_idx_u8

from responsibility.experiments.datasets import (
    DIGITS_CLASSES,
    FASHION_MNIST_CLASSES,
    ImageClassificationDataset,
    build_dataset,
    find_fashion_mnist,
    flip_labels,
    load_digits,
    load_fashion_mnist,
    read_idx,
    sample_indices,
    select_classes,
)


def _fashion_dir_or_skip() -> Path:
    try:
        return find_fashion_mnist()
    except FileNotFoundError as e:
        pytest.skip(f"real Fashion-MNIST not available: {str(e).splitlines()[0]}")


# ---------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_uint8_roundtrip(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "x.idx"
    # bytes written out explicitly: 2 images of 2x3
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(12))
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = read_idx(path)
    assert out.dtype == np.uint8
    assert out.shape == (2, 2, 3)
    assert out[1, 0, 2] == 8
    assert out.flags.writeable


def test_read_idx_big_endian_int32_becomes_native(tmp_path: Path) -> None:
    path = tmp_path / "y.idx"
    path.write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 3]) + struct.pack(">3i", 1, -2, 70000))
    out = read_idx(path)
    assert out.dtype == np.dtype(np.int32)
    assert out.tolist() == [1, -2, 70000]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "bad magic"),
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "bad magic"),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "bad magic"),
        (bytes([0, 0, 8, 0]), "zero dimensions"),
        (bytes([0, 0, 8, 2, 0, 0, 0, 1]), "truncated IDX header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3]), "payload is 3 bytes"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "payload is 2 bytes"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def test_read_idx_rejects_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))[:30])
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_idx(path)


# ---------------------------------------------------------------------------------------------------- Fashion


def test_missing_fashion_dir_raises_with_help(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(missing)
    text = str(info.value)
    assert str(missing) in text
    assert "apt-get install dataset-fashion-mnist" in text
    assert "zalandoresearch/fashion-mnist" in text
    assert "data_dir" in text


def test_default_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import responsibility.experiments.datasets as ds

    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "env-dir"))
    monkeypatch.setattr(ds, "_REPO_ROOT", tmp_path / "repo")
    assert ds.fashion_mnist_search_paths() == [
        tmp_path / "env-dir",
        tmp_path / "shared" / "data" / "fashion-mnist",
        Path("/usr/share/datasets/fashion-mnist"),
    ]
    monkeypatch.delenv("FASHION_MNIST_DIR")
    assert ds.fashion_mnist_search_paths()[0] == tmp_path / "shared" / "data" / "fashion-mnist"
    monkeypatch.undo()  # the real layout: ../shared beside this repository, no machine-specific path
    assert ds.fashion_mnist_search_paths()[-2:] == [
        ROOT.parent / "shared" / "data" / "fashion-mnist",
        Path("/usr/share/datasets/fashion-mnist"),
    ]


def test_default_search_failure_names_every_path_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import responsibility.experiments.datasets as ds

    tried = [tmp_path / "a", tmp_path / "b"]
    (tmp_path / "b").mkdir()
    write_idx_u8(tmp_path / "b" / "train-images-idx3-ubyte", np.zeros((1, 28, 28), np.uint8))  # 1 of 4
    monkeypatch.setattr(ds, "fashion_mnist_search_paths", lambda: tried)
    with pytest.raises(FileNotFoundError) as info:
        ds.find_fashion_mnist()
    assert all(str(p) in str(info.value) for p in tried)


def test_load_fashion_from_explicit_and_env_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = write_fake_fashion(tmp_path)
    images, labels = load_fashion_mnist(tmp_path, "test")
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, arrays["t10k"][0])
    np.testing.assert_array_equal(labels, arrays["t10k"][1])

    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    assert find_fashion_mnist() == tmp_path
    np.testing.assert_array_equal(load_fashion_mnist(split="train")[0], arrays["train"][0])


def test_load_fashion_rejects_inconsistent_files(tmp_path: Path) -> None:
    write_fake_fashion(tmp_path)
    write_idx_u8(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8), compress=True)
    with pytest.raises(ValueError, match="inconsistent"):
        load_fashion_mnist(tmp_path, "test")
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist(tmp_path, "validation")


def test_real_fashion_mnist() -> None:
    directory = _fashion_dir_or_skip()
    images, labels = load_fashion_mnist(directory, "train")
    assert images.shape == (60000, 28, 28)
    assert labels[0] == 9 and FASHION_MNIST_CLASSES[labels[0]] == "Ankle boot"
    assert np.bincount(labels).tolist() == [6000] * 10
    test_images, test_labels = load_fashion_mnist(directory, "test")
    assert test_images.shape == (10000, 28, 28) and len(test_labels) == 10000


def test_class_names() -> None:
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top"
    assert FASHION_MNIST_CLASSES[6] == "Shirt"
    assert len(FASHION_MNIST_CLASSES) == 10
    assert DIGITS_CLASSES == tuple("0123456789")


# ---------------------------------------------------------------------------------------------------- subsets


def test_select_classes_remaps_in_given_order() -> None:
    labels = np.array([6, 1, 0, 6, 3, 0])
    indices, remapped = select_classes(labels, [6, 0])
    assert indices.tolist() == [0, 2, 3, 5]
    assert remapped.tolist() == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="do not occur"):
        select_classes(labels, [0, 9])
    with pytest.raises(ValueError, match="distinct"):
        select_classes(labels, [0, 0])


def test_sample_indices_is_seeded_sorted_and_sized() -> None:
    a = sample_indices(1000, 50, seed=3)
    assert len(a) == len(set(a.tolist())) == 50
    assert (np.diff(a) > 0).all() and a.max() < 1000
    np.testing.assert_array_equal(a, sample_indices(1000, 50, seed=3))
    assert not np.array_equal(a, sample_indices(1000, 50, seed=4))
    np.testing.assert_array_equal(sample_indices(7, None, seed=0), np.arange(7))
    with pytest.raises(ValueError, match="num_samples"):
        sample_indices(10, 11, seed=0)


@pytest.mark.parametrize("n, fraction, expected", [(1000, 0.1, 100), (37, 0.2, 7), (10, 0.0, 0), (5, 1.0, 5)])
def test_flip_labels_flips_exact_count_to_other_classes(n: int, fraction: float, expected: int) -> None:
    labels = np.arange(n) % 3
    noisy, flipped = flip_labels(labels, 3, fraction, seed=0)
    assert len(flipped) == expected
    assert np.flatnonzero(noisy != labels).tolist() == flipped.tolist()
    assert ((noisy >= 0) & (noisy < 3)).all()
    np.testing.assert_array_equal(labels, np.arange(n) % 3)  # input untouched


def test_flip_labels_targets_are_spread_over_other_classes() -> None:
    labels = np.zeros(3000, dtype=np.int64)
    noisy, flipped = flip_labels(labels, 4, 1.0, seed=1)
    counts = np.bincount(noisy, minlength=4)
    assert counts[0] == 0
    assert all(900 < c < 1100 for c in counts[1:])


def test_flip_labels_is_seeded_and_validated() -> None:
    labels = np.arange(200) % 10
    a = flip_labels(labels, 10, 0.25, seed=5)
    b = flip_labels(labels, 10, 0.25, seed=5)
    c = flip_labels(labels, 10, 0.25, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])
    with pytest.raises(ValueError, match="label_noise"):
        flip_labels(labels, 10, 1.5, seed=0)


def test_build_dataset_tracks_sources_and_noise() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 4, 4), dtype=np.uint8)
    labels = np.arange(300) % 10
    ds = build_dataset(images, labels, FASHION_MNIST_CLASSES, classes=[6, 0], num_samples=40, label_noise=0.1, seed=2)
    assert len(ds) == 40 and ds.class_names == ["Shirt", "T-shirt/top"]
    assert set(labels[ds.source_indices].tolist()) <= {0, 6}
    # clean labels are the original ones renumbered (6 -> 0, 0 -> 1)
    expected_clean = np.where(labels[ds.source_indices] == 6, 0, 1)
    assert ds.clean_targets.tolist() == expected_clean.tolist()
    assert len(ds.flipped_ids) == 4
    assert (ds.targets[ds.flipped_ids] != ds.clean_targets[ds.flipped_ids]).all()
    unflipped = np.setdiff1d(np.arange(40), ds.flipped_ids)
    assert (ds.targets[unflipped] == ds.clean_targets[unflipped]).all()
    x, y = ds[5]
    torch.testing.assert_close(x, torch.from_numpy(images[ds.source_indices[5]]).float().unsqueeze(0) / 255)
    assert y.dtype == torch.int64 and int(y) == int(ds.targets[5])

    # The subset does not depend on the amount of label noise.
    clean = build_dataset(images, labels, FASHION_MNIST_CLASSES, classes=[6, 0], num_samples=40, seed=2)
    np.testing.assert_array_equal(clean.source_indices, ds.source_indices)
    assert len(clean.flipped_ids) == 0


def test_dataset_normalize_and_shape_checks() -> None:
    images = np.full((2, 3, 3), 255, dtype=np.uint8)
    ds = ImageClassificationDataset(images, [0, 1], ["a", "b"], normalize=(0.5, 0.25))
    assert ds.images.shape == (2, 1, 3, 3)
    assert torch.allclose(ds.images, torch.full_like(ds.images, 2.0))
    with pytest.raises(ValueError, match="0..1"):
        ImageClassificationDataset(images, [0, 2], ["a", "b"])
    with pytest.raises(ValueError, match="length mismatch"):
        ImageClassificationDataset(images, [0], ["a", "b"])
    with pytest.raises(ValueError, match="images must be"):
        ImageClassificationDataset(np.zeros(4), [0, 0, 0, 0], ["a"])


# ---------------------------------------------------------------------------------------------------- digits


def test_digits_split_is_a_fixed_stratified_partition() -> None:
    from sklearn.datasets import load_digits as sklearn_load_digits

    reference = sklearn_load_digits()
    train_images, train_labels, train_src = load_digits("train")
    test_images, test_labels, test_src = load_digits("test")
    assert len(train_src) + len(test_src) == 1797
    assert not set(train_src.tolist()) & set(test_src.tolist())
    assert len(test_src) == 360
    np.testing.assert_array_equal(train_images, reference.images[train_src])
    np.testing.assert_array_equal(test_labels, reference.target[test_src])
    assert train_images.max() == 16 and train_images.dtype == np.uint8
    np.testing.assert_array_equal(load_digits("train")[2], train_src)
    assert not np.array_equal(load_digits("train", split_seed=1)[2], train_src)

    ds = build_dataset(train_images, train_labels, DIGITS_CLASSES, source_indices=train_src, max_value=16.0)
    assert float(ds.images.max()) == 1.0 and float(ds.images.min()) == 0.0
    np.testing.assert_array_equal(ds.source_indices, train_src)
