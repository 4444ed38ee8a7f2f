"""Lightning data modules for Fashion-MNIST and scikit-learn's digits.

The training loader is a plain ``DataLoader`` over a map-style dataset: batches are ``(x, y)`` and the example
ids (positions in ``train_set``) come from the sampler, where the responsibility callback reads them.

A curation (``curation=PATH``, see :mod:`responsibility.curation`) changes the training set without changing its
ids: relabelled examples get their new labels, removed ones are skipped by the sampler (they stay in the dataset,
so every other id keeps its meaning and stores of the two runs line up; the others come in the order the uncurated
run's sampler gives them, :class:`SkipRemoved`), and when any example is reweighted the batches are ``(x, y, w)``
with per-example loss factors ``w``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler

from responsibility.curation import Curation
from responsibility.experiments.datasets import (
    DIGITS_CLASSES,
    FASHION_MNIST_CLASSES,
    ImageClassificationDataset,
    Split,
    build_dataset,
    find_fashion_mnist,
    load_digits,
    load_fashion_mnist,
)

__all__ = ["DigitsDataModule", "FashionMNISTDataModule", "ImageDataModule", "SkipRemoved"]


class SkipRemoved(Sampler[int]):
    """The order ``inner`` gives (the uncurated run's sampler, drawn from the same seed), without the removed ids.

    So a curated run sees the same examples in the same order as the run it was curated from, less the removed
    ones: the comparison of the two runs shows the curation, not a reshuffle.
    """

    def __init__(self, inner: Sampler[int], kept: np.ndarray) -> None:
        self.inner = inner
        self.kept = np.asarray(kept, dtype=bool)

    def __iter__(self):
        return (i for i in self.inner if self.kept[i])

    def __len__(self) -> int:
        return int(self.kept.sum())


class ImageDataModule(pl.LightningDataModule):
    """Shared knobs and loaders; subclasses say how to load a split and what its geometry is.

    ``num_classes``, ``image_size`` and ``in_channels`` may be passed (Hydra configs interpolate them into the
    model); they are checked against what the data gives, so a config cannot silently disagree with the data.
    """

    all_class_names: Sequence[str] = ()
    image_size: int = 0
    in_channels: int = 1
    max_value: float = 255.0

    def __init__(
        self,
        *,
        classes: Sequence[int] | None = None,
        num_samples: int | None = None,
        label_noise: float = 0.0,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        test_samples: int | None = None,
        shuffle: bool = True,
        normalize: Sequence[float] | None = None,
        num_classes: int | None = None,
        image_size: int | None = None,
        in_channels: int | None = None,
        curation: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        # Read and validated now, so a bad file fails before anything is trained.
        self.curation = None if curation is None else Curation.load(curation)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be non-negative, got {num_workers}")
        self.classes = None if classes is None else [int(c) for c in classes]
        ids = range(len(self.all_class_names)) if self.classes is None else self.classes
        self.class_names = [self._class_name(c) for c in ids]
        self.num_samples = num_samples
        self.label_noise = label_noise
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.test_samples = test_samples
        self.shuffle = shuffle
        self.normalize = None if normalize is None else [float(v) for v in normalize]
        for key, given, actual in (
            ("num_classes", num_classes, self.num_classes),
            ("image_size", image_size, self.image_size),
            ("in_channels", in_channels, self.in_channels),
        ):
            if given is not None and given != actual:
                raise ValueError(
                    f"{type(self).__name__}: {key}={given} was configured but the data gives {actual} "
                    f"(classes={self.classes}); fix data.{key} in the config"
                )
        self.train_set: ImageClassificationDataset | None = None
        self.test_set: ImageClassificationDataset | None = None

    def _class_name(self, class_id: int) -> str:
        if not 0 <= class_id < len(self.all_class_names):
            raise ValueError(f"class id {class_id} out of range 0..{len(self.all_class_names) - 1}")
        return self.all_class_names[class_id]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Return ``(images, labels, source_indices)`` of ``split``; ``None`` indices mean file positions."""
        raise NotImplementedError

    def _build(self, split: Split, num_samples: int | None, label_noise: float) -> ImageClassificationDataset:
        images, labels, source_indices = self.load_split(split)
        return build_dataset(
            images,
            labels,
            self.all_class_names,
            classes=self.classes,
            num_samples=num_samples,
            label_noise=label_noise,
            seed=self.seed,
            source_indices=source_indices,
            max_value=self.max_value,
            normalize=self.normalize,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            train = self._build("train", self.num_samples, self.label_noise)
            if self.curation is not None:
                train.curate(self.curation)
            self.train_set = train
        if self.test_set is None:
            self.test_set = self._build("test", self.test_samples, 0.0)

    def _loader(
        self, dataset: ImageClassificationDataset | None, shuffle: bool, sampler: Sampler | None = None
    ) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        data = self.train_set
        if data is None or self.curation is None or not self.curation.state.removed:
            return self._loader(data, self.shuffle)
        kept = np.zeros(len(data), dtype=np.bool_)
        kept[self.curation.kept_ids()] = True
        inner = RandomSampler(data) if self.shuffle else SequentialSampler(data)
        return self._loader(data, False, SkipRemoved(inner, kept))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False)


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (28x28 grey). ``data_dir=None`` searches the default locations of
    :func:`responsibility.experiments.datasets.find_fashion_mnist`. ``classes=[0, 6]`` gives T-shirt/top vs Shirt,
    relabelled 0 and 1."""

    all_class_names = FASHION_MNIST_CLASSES
    image_size = 28

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir

    def prepare_data(self) -> None:
        """Check that the data are there (nothing is downloaded), before any training starts."""
        find_fashion_mnist(self.data_dir)

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return (*load_fashion_mnist(self.data_dir, split), None)


class DigitsDataModule(ImageDataModule):
    """scikit-learn's 8x8 digits (1797 images, values 0..16), split train/test by ``split_seed``."""

    all_class_names = DIGITS_CLASSES
    image_size = 8
    max_value = 16.0

    def __init__(self, test_fraction: float = 0.2, split_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_fraction = test_fraction
        self.split_seed = split_seed

    def load_split(self, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return load_digits(split, test_fraction=self.test_fraction, split_seed=self.split_seed)
