"""Looping animations of generated images: GIF (plays everywhere) and lossless WebP (smaller), by Pillow."""
from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image

Format = Literal["gif", "webp"]
MEDIA_TYPES = {"gif": "image/gif", "webp": "image/webp", "png": "image/png"}


def encode_animation(frames: np.ndarray, fmt: Format, frame_ms: int) -> bytes:
    """frames: uint8 (N, H, W) or (N, H, W, C); one frame each, looping forever."""
    images = [Image.fromarray(f[..., 0] if f.ndim == 3 and f.shape[2] == 1 else f) for f in frames]
    out = io.BytesIO()
    options = {"lossless": True, "quality": 100, "method": 1} if fmt == "webp" else {"optimize": False}
    # disposal 1 keeps nothing from the previous frame visible through an unchanged pixel: frames are whole
    images[0].save(out, format=fmt.upper(), save_all=True, append_images=images[1:], duration=frame_ms, loop=0,
                   **({"disposal": 1} if fmt == "gif" else {}), **options)
    return out.getvalue()
