"""Small image-classification datasets for the experiments: Fashion-MNIST and scikit-learn's digits.

Framework-free (torch and numpy only). Nothing here downloads: Fashion-MNIST is read from IDX files already on
disk, the digits ship with scikit-learn.

Example ids are positions in the built dataset (``0..N-1``), which is what a map-style DataLoader's sampler
yields; ``source_indices`` maps them back to the original files.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from responsibility.choices import check_choice
from responsibility.curation import Curation
from responsibility.errors import DatasetNotFoundError

__all__ = [
    "DIGITS_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "ImageClassificationDataset",
    "build_dataset",
    "find_fashion_mnist",
    "fashion_mnist_search_paths",
    "flip_labels",
    "load_digits",
    "load_fashion_mnist",
    "read_idx",
    "sample_indices",
    "select_classes",
]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

FASHION_MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# IDX type codes (third byte of the magic number); multi-byte values are big-endian.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The repository root when the package runs from a checkout (responsibility/experiments/datasets.py).
_REPO_ROOT = Path(__file__).resolve().parents[2]
Split = Literal["train", "test"]


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a native-endian numpy array.

    Raises ``ValueError`` when the file is not a well-formed IDX file (bad magic number, truncated or
    oversized payload, unreadable gzip stream).
    """
    path = Path(path)
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if gzipped else path.open("rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: corrupt gzip stream ({e})") from e

    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX payload is {len(data) - header} bytes, but dimensions {dims} of {dtype} need {expected}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def fashion_mnist_search_paths() -> list[Path]:
    """Directories searched for Fashion-MNIST when no ``data_dir`` is given, in order: ``$FASHION_MNIST_DIR``,
    ``../shared/data/fashion-mnist`` beside the repository, and where Debian's ``dataset-fashion-mnist`` installs it."""
    candidates = []
    if os.environ.get("FASHION_MNIST_DIR"):
        candidates.append(Path(os.environ["FASHION_MNIST_DIR"]))
    candidates += [
        _REPO_ROOT.parent / "shared" / "data" / "fashion-mnist",
        Path("/usr/share/datasets/fashion-mnist"),
    ]
    return list(dict.fromkeys(candidates))


def _idx_file(directory: Path, stem: str) -> Path:
    """``<stem>.gz`` if it is in ``directory``, else the raw ``<stem>`` (which may be missing too)."""
    gzipped = directory / f"{stem}.gz"
    return gzipped if gzipped.is_file() else directory / stem


def find_fashion_mnist(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory holding all four Fashion-MNIST IDX files.

    With ``data_dir`` only that directory is checked; otherwise :func:`fashion_mnist_search_paths`.
    Raises :class:`~responsibility.errors.DatasetNotFoundError` naming the directories tried and how to get the data.
    """
    candidates = [Path(data_dir)] if data_dir is not None else fashion_mnist_search_paths()
    stems = [stem for pair in FASHION_MNIST_FILES.values() for stem in pair]
    for directory in candidates:
        if all(_idx_file(directory, stem).is_file() for stem in stems):
            return directory
    tried = "\n".join(f"  - {c}" for c in candidates)
    raise DatasetNotFoundError(
        "Fashion-MNIST not found. Looked for the IDX files "
        f"({', '.join(s + '[.gz]' for s in stems)}) in:\n{tried}\n"
        "To get it (nothing is downloaded automatically): `apt-get install dataset-fashion-mnist` "
        "(installs to /usr/share/datasets/fashion-mnist), or download the four .gz IDX files from the "
        "zalandoresearch/fashion-mnist GitHub repository (data/fashion/) into a directory of your choice and "
        "set FASHION_MNIST_DIR to it, or point the data module at it.",
        fixes=[{"data_dir": ...}],
    )


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None, split: Split = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Load a Fashion-MNIST split as ``(images uint8 (N, 28, 28), labels int64 (N,))``."""
    check_choice("split", split, Split)
    directory = find_fashion_mnist(data_dir)
    image_stem, label_stem = FASHION_MNIST_FILES[split]
    images = read_idx(_idx_file(directory, image_stem))
    labels = read_idx(_idx_file(directory, label_stem))
    if images.dtype != np.uint8 or images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{directory}: inconsistent Fashion-MNIST {split} files: images {images.dtype}{images.shape}, "
            f"labels {labels.dtype}{labels.shape}"
        )
    labels = labels.astype(np.int64)
    if labels.size and not 0 <= labels.min() <= labels.max() < len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{directory}: Fashion-MNIST {split} labels outside 0..9")
    return images, labels


def load_digits(
    split: Split = "train", *, test_fraction: float = 0.2, split_seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load a split of scikit-learn's 8x8 digits.

    Returns ``(images, labels, source_indices)``: uint8 ``(N, 8, 8)`` with values 0..16, int64 ``(N,)``, and
    int64 ``(N,)`` positions in ``sklearn.datasets.load_digits()``. The split is stratified and fixed by
    ``split_seed`` alone, so runs with different training seeds share the same train/test partition.
    """
    check_choice("split", split, Split)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    # Lazy: scikit-learn is an optional (experiment-only) dependency.
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_load_digits()
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=split_seed, stratify=labels
    )
    idx = np.sort(train_idx if split == "train" else test_idx).astype(np.int64)
    return bunch.images[idx].astype(np.uint8), labels[idx], idx


def select_classes(labels: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Keep the examples whose label is in ``classes``.

    Returns ``(indices, remapped_labels)``: positions of the kept examples, and their labels renumbered
    ``0..len(classes)-1`` in the order ``classes`` lists them.
    """
    classes = [int(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must list at least two distinct class ids, got {classes}")
    missing = sorted(set(classes) - set(np.unique(labels).tolist()))
    if missing:
        raise ValueError(f"classes {missing} do not occur in the data")
    lookup = np.full(int(max(labels.max(), max(classes))) + 1, -1, dtype=np.int64)
    lookup[classes] = np.arange(len(classes))
    indices = np.flatnonzero(lookup[labels] >= 0)
    return indices, lookup[labels[indices]]


def sample_indices(n: int, num_samples: int | None, seed: int) -> np.ndarray:
    """A seeded random subset of ``range(n)`` of size ``num_samples`` (all if ``None``), ascending."""
    if num_samples is None:
        return np.arange(n, dtype=np.int64)
    if not 0 < num_samples <= n:
        raise ValueError(f"num_samples must be in 1..{n}, got {num_samples}")
    rng = np.random.default_rng([seed, 0])
    return np.sort(rng.choice(n, size=num_samples, replace=False)).astype(np.int64)


def flip_labels(labels: np.ndarray, num_classes: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(fraction * N)`` labels, each to a class drawn uniformly among the other classes.

    Returns ``(noisy_labels, flipped_ids)`` with ``flipped_ids`` sorted. ``round`` is Python's (half to even).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {fraction}")
    n_flip = round(fraction * len(labels))
    if n_flip and num_classes < 2:
        raise ValueError("label noise needs at least two classes")
    # Its own stream, so the noise does not depend on whether a subset was drawn before it.
    rng = np.random.default_rng([seed, 1])
    flipped = np.sort(rng.choice(len(labels), size=n_flip, replace=False)).astype(np.int64)
    noisy = labels.astype(np.int64, copy=True)
    noisy[flipped] = (noisy[flipped] + rng.integers(1, num_classes, size=n_flip)) % num_classes
    return noisy, flipped


class ImageClassificationDataset(Dataset):
    """Images as float32 ``(N, C, H, W)`` in [0, 1] (or normalized) with int64 labels.

    ``__getitem__(i)`` returns ``(image, target)`` where ``target`` is the training label, possibly noisy.

    Attributes:
        targets: training labels (int64 tensor, ``(N,)``), possibly noisy.
        clean_targets: true labels (int64 tensor, ``(N,)``).
        flipped_ids: sorted int64 numpy array of the ids whose target differs from the clean label.
        weights: per-example loss factors (float32 tensor, ``(N,)``) of a curation, or None; when set, items are
            ``(image, target, weight)``.
        class_names: names of classes ``0..C-1``.
        source_indices: int64 numpy array, position of each example in the original data.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        class_names: Sequence[str],
        *,
        targets: np.ndarray | torch.Tensor | None = None,
        source_indices: np.ndarray | None = None,
        max_value: float = 255.0,
        normalize: Sequence[float] | None = None,
    ) -> None:
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32) / max_value
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4:
            raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
        if normalize is not None:
            if len(normalize) != 2 or normalize[1] <= 0:
                raise ValueError(f"normalize must be (mean, std) with std > 0, got {normalize}")
            x = (x - normalize[0]) / normalize[1]
        self.images = x
        self.clean_targets = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if targets is None:
            self.targets = self.clean_targets.clone()
        else:
            self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
        self.class_names = list(class_names)
        n = len(x)
        self.source_indices = (
            np.arange(n, dtype=np.int64) if source_indices is None else np.asarray(source_indices, np.int64)
        )
        if not len(self.clean_targets) == len(self.targets) == len(self.source_indices) == n:
            raise ValueError(
                f"length mismatch: {n} images, {len(self.clean_targets)} labels, "
                f"{len(self.targets)} targets, {len(self.source_indices)} source indices"
            )
        for name, t in (("labels", self.clean_targets), ("targets", self.targets)):
            if n and not 0 <= int(t.min()) <= int(t.max()) < len(self.class_names):
                raise ValueError(f"{name} must lie in 0..{len(self.class_names) - 1}")
        self.weights: torch.Tensor | None = None

    @property
    def flipped_ids(self) -> np.ndarray:
        return np.flatnonzero((self.targets != self.clean_targets).numpy()).astype(np.int64)

    def curate(self, curation: Curation) -> None:
        """Train with ``curation``'s labels and loss weights (in place; ids, images and true labels unchanged).

        Removed examples stay in the dataset, so ids keep their meaning: the data module's sampler skips them.
        """
        self.targets = torch.from_numpy(curation.labels(self.targets.numpy()))
        weights = curation.loss_weights()
        self.weights = None if weights is None else torch.from_numpy(weights)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if self.weights is not None:
            return self.images[index], self.targets[index], self.weights[index]
        return self.images[index], self.targets[index]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def build_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    classes: Sequence[int] | None = None,
    num_samples: int | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
    source_indices: np.ndarray | None = None,
    max_value: float = 255.0,
    normalize: Sequence[float] | None = None,
) -> ImageClassificationDataset:
    """Build a dataset from raw arrays: class subset, then a seeded sample, then seeded label noise.

    ``classes`` keeps those original class ids and renumbers them ``0..len(classes)-1`` (``class_names``
    follows). The result is a deterministic function of the arguments.
    """
    source = np.arange(len(labels), dtype=np.int64) if source_indices is None else np.asarray(source_indices)
    labels = np.asarray(labels, dtype=np.int64)
    names = list(class_names)
    if classes is not None:
        keep, labels = select_classes(labels, classes)
        images, source = images[keep], source[keep]
        names = [names[c] for c in classes]
    keep = sample_indices(len(labels), num_samples, seed)
    images, labels, source = images[keep], labels[keep], source[keep]
    targets, _ = flip_labels(labels, len(names), label_noise, seed)
    return ImageClassificationDataset(
        images,
        labels,
        names,
        targets=targets,
        source_indices=source,
        max_value=max_value,
        normalize=normalize,
    )
