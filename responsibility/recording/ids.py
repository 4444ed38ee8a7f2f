"""Which training examples are in each batch.

Drop-in: :class:`SamplerIdTracker` wraps a map-style ``DataLoader``'s (batch) sampler so that the indices it
yields are queued in the main process, in order, before workers load them; one entry is popped per batch.
Prefetching, worker processes and early-ended epochs are handled because each new iteration of the loader
starts a new queue. Alternatively ids are read from the batch itself (:func:`ids_from_batch`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from responsibility.errors import ExampleIdError

IdsKey = str | int | Callable[[Any], Any]


class _RecordingSampler:
    """Delegates to a (batch) sampler and queues every batch of indices it yields."""

    def __init__(self, inner: Any, tracker: SamplerIdTracker, batched: bool) -> None:
        self._inner = inner
        self._tracker = tracker
        self._batched = batched

    def __iter__(self) -> Iterator[Any]:
        queue = self._tracker._new_iteration()
        for item in self._inner:
            queue.append(np.asarray(item if self._batched else [item], dtype=np.int64).reshape(-1))
            yield item

    def __len__(self) -> int:
        return len(self._inner)

    def __getattr__(self, name: str) -> Any:
        # set_epoch, batch_size, drop_last, sampler... stay visible to Lightning and the DataLoader.
        return getattr(self._inner, name)


class SamplerIdTracker:
    """Learns example ids from a DataLoader's sampler without touching the dataset or the model."""

    def __init__(self) -> None:
        self._queue: deque[np.ndarray] = deque()
        self._lock = threading.Lock()
        self.loader: DataLoader | None = None

    def attach(self, loader: Any) -> bool:
        """Wrap ``loader``'s index sampler in place; False if it has none (iterable dataset, custom loader)."""
        if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
            return False
        if isinstance(loader.batch_sampler, _RecordingSampler) or isinstance(loader.sampler, _RecordingSampler):
            self.loader = loader
            wrapped = loader.batch_sampler if isinstance(loader.batch_sampler, _RecordingSampler) else loader.sampler
            if getattr(wrapped, "_tracker", None) is not self:
                raise RuntimeError("this DataLoader is already tracked by another ResponsibilityCallback")
            return True
        # DataLoader forbids re-assigning its samplers after __init__; iteration reads them afresh each epoch,
        # so replacing the attribute before the first iteration is safe.
        if loader.batch_sampler is not None:
            object.__setattr__(loader, "batch_sampler", _RecordingSampler(loader.batch_sampler, self, True))
        else:
            object.__setattr__(loader, "sampler", _RecordingSampler(loader.sampler, self, False))
        self.loader = loader
        return True

    def _new_iteration(self) -> deque[np.ndarray]:
        with self._lock:
            self._queue = deque()
            return self._queue

    def next_ids(self) -> np.ndarray:
        """Ids of the next batch the training loop receives."""
        try:
            return self._queue.popleft()
        except IndexError:
            raise ExampleIdError(
                "no sampler indices are queued for this batch: the train DataLoader was not tracked (was it "
                "created outside the Trainer's data hooks?). Read the ids from the batch instead.",
                fixes=[{"ids_key": ...}],
            ) from None

    @property
    def num_examples(self) -> int | None:
        return None if self.loader is None else dataset_length(self.loader.dataset)


def ids_from_batch(batch: Any, key: IdsKey) -> np.ndarray:
    """Example ids carried by the batch: ``batch[key]`` for a mapping or sequence, ``key(batch)`` if callable."""
    if callable(key):
        value = key(batch)
    elif isinstance(batch, Mapping):
        if key not in batch:
            raise ExampleIdError(f"ids_key {key!r} is not in the batch (keys: {list(batch)})")
        value = batch[key]
    elif isinstance(batch, Sequence) and isinstance(key, int):
        if not -len(batch) <= key < len(batch):
            raise ExampleIdError(f"ids_key {key} is out of range for a batch of {len(batch)} fields")
        value = batch[key]
    elif isinstance(key, str) and hasattr(batch, key):
        value = getattr(batch, key)
    else:
        raise ExampleIdError(f"cannot take ids_key {key!r} from a batch of type {type(batch).__name__}")
    if value is None:
        raise ExampleIdError(f"ids_key {key!r} gave None")
    return as_ids(value)


def dataset_length(dataset: Any) -> int | None:
    """``len(dataset)``, or None for a dataset without a length (an iterable one)."""
    try:
        return len(dataset)
    except TypeError:
        return None


def batch_length(batch: Any) -> int | None:
    """Leading dimension of the first tensor found in the batch, if any (to cross-check captured ids)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    items: Iterable[Any]
    if isinstance(batch, Mapping):
        items = batch.values()
    elif isinstance(batch, Sequence) and not isinstance(batch, str):
        items = batch
    else:
        return None
    for item in items:
        n = batch_length(item)
        if n is not None:
            return n
    return None


def dataset_labels(dataset: Any, num_examples: int) -> np.ndarray | None:
    """Per-example integer labels if the dataset exposes them (``targets``/``labels``, or a TensorDataset)."""
    for attr in ("targets", "labels"):
        value = getattr(dataset, attr, None)
        if value is not None:
            arr = _as_label_array(value, num_examples)
            if arr is not None:
                return arr
    tensors = getattr(dataset, "tensors", None)
    if isinstance(tensors, Sequence) and len(tensors) >= 2:
        return _as_label_array(tensors[-1], num_examples)
    return None


def dataset_class_names(dataset: Any) -> list[str] | None:
    """The dataset's class names if it names its classes (``class_names``, or torchvision's ``classes``)."""
    for attr in ("class_names", "classes"):
        value = getattr(dataset, attr, None)
        if isinstance(value, Sequence) and not isinstance(value, str) and value:
            if all(isinstance(c, str) for c in value):
                return list(value)
    return None


def _as_label_array(value: Any, n: int) -> np.ndarray | None:
    try:
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        return None
    return arr.astype(np.int64)


def as_ids(ids: np.ndarray | torch.Tensor | Sequence[int]) -> np.ndarray:
    """Example ids as a 1-D int64 NumPy array; non-integer ids are an :class:`ExampleIdError`."""
    if isinstance(ids, torch.Tensor):
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ExampleIdError(f"example ids must be integers, got a {ids.dtype} tensor")
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ExampleIdError(f"example ids must be integers, got dtype {arr.dtype}")
    return arr.reshape(-1).astype(np.int64, copy=False)


def check_ids(ids: np.ndarray, num_examples: int) -> None:
    """Every id must index the training set."""
    if ids.size == 0:
        raise ExampleIdError("an optimizer step has no example ids (empty batch, or ids were not captured)")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= num_examples:
        bad = lo if lo < 0 else hi
        raise ExampleIdError(f"example id {bad} is outside [0, {num_examples}) (num_examples of the store)")


__all__ = [
    "IdsKey",
    "SamplerIdTracker",
    "as_ids",
    "batch_length",
    "check_ids",
    "dataset_labels",
    "dataset_length",
    "ids_from_batch",
]
