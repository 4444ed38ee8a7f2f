"""PNG thumbnails of training and test images, rendered once per image and kept in memory (a few hundred bytes
each, so a 60,000-example run fits in tens of MB). The browser scales them up with ``image-rendering: pixelated``."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["ThumbnailCache", "to_png"]


def to_png(image: torch.Tensor, normalize: Sequence[float] | None = None) -> bytes:
    """A ``(C, H, W)`` image in [0, 1] (or normalized by ``(mean, std)``) as PNG bytes (grey or RGB)."""
    x = image.detach().float().cpu()
    if normalize is not None:
        x = x * normalize[1] + normalize[0]
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if pixels.shape[0] not in (1, 3):
        raise ValueError(f"cannot draw an image with {pixels.shape[0]} channels")
    # (H, W) uint8 is drawn grey, (H, W, 3) as RGB.
    picture = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=False)
    return out.getvalue()


class ThumbnailCache:
    """PNG bytes by key, least recently used dropped beyond ``max_items``."""

    def __init__(self, max_items: int = 200_000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, int], render: Callable[[], bytes]) -> bytes:
        with self._lock:
            png = self._items.get(key)
            if png is not None:
                self._items.move_to_end(key)
                return png
        png = render()
        with self._lock:
            self._items[key] = png
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return png
