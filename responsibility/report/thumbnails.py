"""Small PNG thumbnails as ``data:`` URIs, so an HTML report carries its images inside the file.

Written with the standard library (zlib, struct): the report needs no imaging package.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import numpy as np

__all__ = ["png_data_uri", "to_pixels"]


def to_pixels(image: Any) -> np.ndarray:
    """A ``(C, H, W)``, ``(H, W, C)`` or ``(H, W)`` image (tensor or array) as uint8 ``(H, W)`` grey or
    ``(H, W, 3)`` RGB, stretched to the image's own value range."""
    a = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"a thumbnail needs a grey or RGB image, got shape {a.shape}")
    lo, hi = float(a.min()), float(a.max())
    scaled = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.round(scaled * 255).astype(np.uint8)


def png_data_uri(image: Any) -> str:
    """``data:image/png;base64,...`` of an image (see :func:`to_pixels`)."""
    pixels = to_pixels(image)
    height, width = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0  # PNG colour type: RGB or grey, 8 bits per sample
    rows = pixels.reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every scanline

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
