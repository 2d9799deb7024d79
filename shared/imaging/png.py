"""PNG encoding of uint8 grids, fast: no per-row filter search, one deflate call.

The grids served here are mostly flat padding and nearest-neighbour repeats, where a filter search
buys little and costs most of the time. Rows are written with filter 0 and the whole image deflated
at level 1 by ISA-L (the `isal` package, several times faster than zlib at that level); stdlib zlib
stands in where `isal` is not installed. How much faster than Pillow: benchmarks/png_encoders.py, and the
serving results (docs/results/serving.md).
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

try:
    from isal import isal_zlib as _deflate
except ImportError:  # a host without the wheel: the same bytes format, about 5x slower
    _deflate = zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: grey, RGB, RGBA
LEVEL = 1


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(image: np.ndarray) -> bytes:
    """(H, W) or (H, W, C) uint8 with C of 1, 3 or 4 -> PNG bytes that decode to exactly these pixels."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected (H, W[, C]) uint8, got {image.dtype} of shape {image.shape}")
    if image.ndim == 2:
        image = image[:, :, None]
    height, width, channels = image.shape
    if channels not in _COLOUR_TYPES or height == 0 or width == 0:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    rows = np.empty((height, width * channels + 1), np.uint8)
    rows[:, 0] = 0  # filter type 0 (None) on every row
    rows[:, 1:] = image.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", _deflate.compress(rows.tobytes(), LEVEL))
            + _chunk(b"IEND", b""))
