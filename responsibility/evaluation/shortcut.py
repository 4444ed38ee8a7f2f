"""Planting a shortcut (a spurious feature) into image data, and metrics of explanations against it.

The "data contamination" test of model-debugging studies: a bright square patch is planted in one corner of most
training images of one class (and, optionally, of a few images of the other classes). A model trained on the data
learns the patch as a shortcut for that class; test images of other classes with the patch are pulled towards it.
A good attribution method should then name the patched training images as responsible for those predictions.

numpy only (no torch, no Lightning); torch CPU tensors are accepted wherever ``np.asarray`` takes them.

- :func:`choose_patched`: which training examples receive the patch (a seeded boolean mask).
- :func:`plant_patch`: a copy of the images with the patch planted on the masked ones.
- :func:`precision_at_k`, :func:`auprc_rows`: per test input, how well an attribution ranking finds the patched
  examples (the AUPRC is :func:`responsibility.evaluation.auprc`, row by row).
- :func:`topk_composition`: what the top k of each ranking are made of (patched or not, shortcut class or not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np

from responsibility.choices import check_choice
from responsibility.evaluation.metrics import auprc

__all__ = [
    "CORNERS",
    "COMPOSITION",
    "auprc_rows",
    "choose_patched",
    "patch_window",
    "plant_patch",
    "precision_at_k",
    "topk_composition",
]

Corner = Literal["top_left", "top_right", "bottom_left", "bottom_right"]
CORNERS: tuple[Corner, ...] = get_args(Corner)
COMPOSITION: tuple[str, ...] = ("patched_in_class", "unpatched_in_class", "patched_other", "unpatched_other")


def _as_mask(mask: Any, n: int) -> np.ndarray:
    """A boolean (n,) mask from a boolean mask or a sequence of example ids."""
    m = np.asarray(mask)
    if m.dtype == bool:
        if m.shape != (n,):
            raise ValueError(f"a boolean mask must have shape ({n},), got {m.shape}")
        return m.copy()
    if m.size == 0:
        return np.zeros(n, dtype=bool)
    if m.ndim != 1 or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"mask must be a boolean (N,) array or 1-D integer ids, got {m.dtype}{m.shape}")
    if m.min() < 0 or m.max() >= n:
        raise ValueError(f"mask ids must lie in 0..{n - 1}, got {int(m.min())}..{int(m.max())}")
    out = np.zeros(n, dtype=bool)
    out[m] = True
    return out


def patch_window(height: int, width: int, size: int, corner: str = "top_left") -> tuple[slice, slice]:
    """The (rows, columns) slices of a ``size`` x ``size`` square in ``corner`` of a ``height`` x ``width`` image."""
    check_choice("corner", corner, Corner)
    if not 1 <= size <= min(height, width):
        raise ValueError(f"patch size must be in 1..{min(height, width)} for {height}x{width} images, got {size}")
    rows = slice(0, size) if corner.startswith("top") else slice(height - size, height)
    cols = slice(0, size) if corner.endswith("left") else slice(width - size, width)
    return rows, cols


def plant_patch(
    images: Any,
    mask: Any,
    *,
    size: int = 4,
    value: float = 1.0,
    corner: str = "top_left",
) -> tuple[np.ndarray, np.ndarray]:
    """Plant a square patch of constant ``value`` in ``corner`` of the images selected by ``mask``.

    Args:
        images: ``(N, H, W)`` or ``(N, C, H, W)`` (every channel is set); not modified.
        mask: boolean ``(N,)`` or integer example ids.
        size: side of the square, in pixels.
        value: the pixel value planted (the images' maximum intensity for a bright patch, e.g. 1.0 for images
            scaled to [0, 1], 255 for uint8).
        corner: one of :data:`CORNERS`.

    Returns:
        ``(patched, mask)``: a copy of the images (same dtype) and the boolean ``(N,)`` mask of patched ones.
    """
    # np.asarray, then a copy: np.array(tensor) asks torch's __array__ for a copy keyword it lacks (deprecated).
    x = np.asarray(images).copy()
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {x.shape}")
    if not np.isfinite(value):
        raise ValueError(f"value must be finite, got {value}")
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        if not info.min <= value <= info.max:
            raise ValueError(f"value {value} does not fit the images' dtype {x.dtype}")
    m = _as_mask(mask, len(x))
    rows, cols = patch_window(x.shape[-2], x.shape[-1], size, corner)
    x[m, ..., rows, cols] = value
    return x, m


def choose_patched(
    labels: Any,
    shortcut_class: int,
    fraction: float,
    other_fraction: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Boolean mask of the examples that get the patch: exactly ``round(fraction · n_c)`` of the ``n_c`` examples
    labelled ``shortcut_class`` and ``round(other_fraction · n_o)`` of the ``n_o`` others, drawn with a seeded
    generator (``round`` is Python's, half to even)."""
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {y.dtype}{y.shape}")
    for name, f in (("fraction", fraction), ("other_fraction", other_fraction)):
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {f}")
    in_class = np.flatnonzero(y == shortcut_class)
    if len(in_class) == 0:
        raise ValueError(f"no example is labelled {shortcut_class}: the shortcut class must occur in the data")
    others = np.flatnonzero(y != shortcut_class)
    rng = np.random.default_rng([seed, 5])  # its own stream, like experiments.datasets' label noise
    mask = np.zeros(len(y), dtype=bool)
    mask[rng.choice(in_class, size=round(fraction * len(in_class)), replace=False)] = True
    if len(others):
        mask[rng.choice(others, size=round(other_fraction * len(others)), replace=False)] = True
    return mask


def _scores_2d(scores: Any, n: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != n:
        raise ValueError(f"scores must be (n_test, {n}), got shape {s.shape}")
    return s


def precision_at_k(scores: Any, mask: Any, k: int) -> np.ndarray:
    """Per row of ``scores`` (n_test, N): the fraction of its ``k`` highest-scored examples (ties to the smaller
    id) that ``mask`` marks; shape (n_test,)."""
    m = np.asarray(mask, dtype=bool)
    s = _scores_2d(scores, len(m))
    if not 1 <= k <= len(m):
        raise ValueError(f"k must be in 1..{len(m)}, got {k}")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return m[top].mean(axis=1)


def auprc_rows(scores: Any, mask: Any, among: Sequence[bool] | np.ndarray | None = None) -> np.ndarray:
    """Per row of ``scores`` (n_test, N): the AUPRC (average precision) of its ranking against ``mask``.

    ``among`` (boolean (N,)) restricts the ranking to those examples, e.g. to one class; ``mask`` must mark at
    least one of them. Shape (n_test,).
    """
    m = np.asarray(mask, dtype=bool)
    s = _scores_2d(scores, len(m))
    keep = np.ones(len(m), dtype=bool) if among is None else np.asarray(among, dtype=bool)
    if keep.shape != m.shape:
        raise ValueError(f"among must have shape {m.shape}, got {keep.shape}")
    sub = m[keep]
    if not sub.any():
        raise ValueError("no marked example among the selected ones: AUPRC is undefined")
    return np.array([auprc(row[keep], sub) for row in s])


def topk_composition(scores: Any, mask: Any, in_class: Any, k: int) -> dict[str, np.ndarray]:
    """Per row of ``scores`` (n_test, N): the shares of its ``k`` highest-scored examples (ties to the smaller id)
    that are marked by ``mask`` or not, and in ``in_class`` (boolean (N,), e.g. the shortcut class) or not.

    Returns the four (n_test,) arrays named in :data:`COMPOSITION`; they sum to 1 row by row, and
    ``patched_in_class + patched_other`` is :func:`precision_at_k`.
    """
    m = np.asarray(mask, dtype=bool)
    c = np.asarray(in_class, dtype=bool)
    if c.shape != m.shape:
        raise ValueError(f"in_class must have shape {m.shape}, got {c.shape}")
    s = _scores_2d(scores, len(m))
    if not 1 <= k <= len(m):
        raise ValueError(f"k must be in 1..{len(m)}, got {k}")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    tm, tc = m[top], c[top]
    parts = (tm & tc, ~tm & tc, tm & ~tc, ~tm & ~tc)
    return {name: part.mean(axis=1) for name, part in zip(COMPOSITION, parts, strict=True)}
