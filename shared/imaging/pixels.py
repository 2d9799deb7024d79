"""Pictures into a model's input: any image to the model's size and channels (how the trainer reads a
folder of images, and how the service reads an uploaded one), and uint8 pixels to the [-1, 1] range."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def fit_image(image: Image.Image, size: int, channels: int = 1) -> np.ndarray:
    """uint8 (size, size, channels): converted to grayscale or RGB and resized bilinearly (aspect not kept)."""
    mode = "L" if channels == 1 else "RGB"
    resized = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8).reshape(size, size, channels)


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], the generator's tanh range."""
    return batch.float().div_(127.5).sub_(1.0)
