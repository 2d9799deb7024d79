"""Uploaded pictures into a model's input: any image the service can read, converted to the model's size and
channels as the trainer reads a folder of images; a 422 naming the file for anything else."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.operations.rejections import INVALID_IMAGE, LIMIT_EXCEEDED, Refused
from shared.imaging.pixels import fit_image


def decode(upload: bytes, loc: list, size: int, channels: int, max_pixels: int) -> np.ndarray:
    """One upload as uint8 (size, size, channels)."""
    try:
        with Image.open(io.BytesIO(upload)) as image:  # reads the header only: the size is known before decoding
            if image.width * image.height > max_pixels:
                raise Refused(loc, f"{image.width}x{image.height} pixels is more than MAX_PIXELS ({max_pixels})",
                                  LIMIT_EXCEEDED)
            return fit_image(image, size, channels)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise Refused(loc, f"not an image this service can read (PNG, JPEG, ...): {e}", INVALID_IMAGE) from None
