"""Looping animations of generated images: GIF (plays everywhere) and lossless WebP (smaller), by Pillow."""
from __future__ import annotations

import io
from typing import Literal

import numpy as np
import torch
from PIL import Image

from shared.imaging.grids import upscale

Format = Literal["gif", "webp"]
MEDIA_TYPES = {"gif": "image/gif", "webp": "image/webp", "png": "image/png"}


def encode_animation(images: torch.Tensor, fmt: Format, frame_ms: int, scale: int = 1) -> bytes:
    """uint8 (N, C, H, W) images, one frame each (enlarged `scale` times), looping forever."""
    frames = [upscale(image, scale) for image in images.numpy().transpose(0, 2, 3, 1)]
    pictures = [Image.fromarray(np.ascontiguousarray(f[..., 0] if f.shape[2] == 1 else f)) for f in frames]
    out = io.BytesIO()
    options = {"lossless": True, "quality": 100, "method": 1} if fmt == "webp" else {"optimize": False}
    # disposal 1 keeps nothing from the previous frame visible through an unchanged pixel: frames are whole
    pictures[0].save(out, format=fmt.upper(), save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0,
                   **({"disposal": 1} if fmt == "gif" else {}), **options)
    return out.getvalue()
