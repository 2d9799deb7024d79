"""Image batches to grid images: one code path for the trainer's figures and the service.

Quantising happens on the generator's device (torch); tiling and enlarging in NumPy, vectorised (no
loop over images); only row labels are drawn per row.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) floats in [-1, 1] -> uint8 in [0, 255], on the same device."""
    return images.detach().add(1).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def make_grid(images: np.ndarray, nrow: int = 8, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile (N, C, H, W) uint8 images into an (rows*(H+p)+p, nrow*(W+p)+p, C) grid image, `nrow` per row.

    Same layout as torchvision.utils.make_grid (blank cells fill the last row), in NumPy: one copy of
    the pixels, no per-image loop, and no torch thread pool woken outside the inference thread.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("no images to tile")
    nrow = max(1, min(nrow, n))
    rows = -(-n // nrow)
    p = padding
    grid = np.full((rows * (h + p) + p, nrow * (w + p) + p, c), pad_value, np.uint8)
    # the cells as a (rows, h, nrow, w, c) view into the grid, each starting after its top and left padding
    row_bytes = grid.strides[0]
    cells = np.ndarray((rows, h, nrow, w, c), np.uint8, buffer=grid, offset=p * row_bytes + p * c,
                       strides=((h + p) * row_bytes, row_bytes, (w + p) * c, c, 1))
    full, rest = divmod(n, nrow)
    cells[:full] = images[:full * nrow].reshape(full, nrow, c, h, w).transpose(0, 3, 1, 4, 2)
    if rest:  # blank cells fill the last row
        cells[full, :, :rest] = images[full * nrow:].transpose(2, 0, 3, 1)
    return grid


def upscale(grid: np.ndarray, scale: int) -> np.ndarray:
    """Integer nearest-neighbour enlargement of an (H, W, C) image."""
    if scale == 1:
        return grid
    h, w, c = grid.shape
    return np.broadcast_to(grid[:, None, :, None, :], (h, scale, w, scale, c)).reshape(h * scale, w * scale, c)


def grid_size(n: int, image_hw: tuple[int, int], nrow: int, padding: int, scale: int = 1) -> tuple[int, int]:
    """(width, height) in pixels of the grid `make_grid` + `upscale` would produce, without making it."""
    h, w = image_hw
    nrow = max(1, min(nrow, n))
    rows = -(-n // nrow)
    return ((nrow * (w + padding) + padding) * scale, (rows * (h + padding) + padding) * scale)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # FreeType build of Pillow: scalable
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def add_row_labels(image: Image.Image, labels: Sequence[str], row_height: int, top: int = 0) -> Image.Image:
    """A new image with a white margin on the left holding one label per grid row, vertically centred."""
    font_size = max(10, min(24, int(row_height * 0.45)))
    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    width = max(int(probe.textlength(text, font=font)) for text in labels) + font_size
    white = 255 if image.mode == "L" else (255, 255, 255)
    black = 0 if image.mode == "L" else (0, 0, 0)
    out = Image.new(image.mode, (image.width + width, image.height), white)
    out.paste(image, (width, 0))
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(labels):
        y = top + i * row_height + row_height / 2
        draw.text((width - font_size // 2, y), text, fill=black, font=font, anchor="rm")
    return out


def grid_array(images: torch.Tensor | np.ndarray, nrow: int = 8, padding: int = 2, scale: int = 1,
               row_labels: Sequence[str] | None = None) -> np.ndarray:
    """Quantised images, uint8 (N, C, H, W) -> the (H, W, C) grid image, upscaled, optionally with row labels."""
    array = images.numpy() if isinstance(images, torch.Tensor) else images
    grid = upscale(make_grid(array, nrow, padding), scale)
    if row_labels:
        row_height = (array.shape[2] + padding) * scale
        labelled = add_row_labels(_pil(grid), row_labels, row_height, top=padding * scale // 2)
        grid = np.asarray(labelled).reshape(labelled.height, labelled.width, -1)
    return grid


def _pil(grid: np.ndarray) -> Image.Image:
    return Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)


def render_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, scale: int = 1,
                row_labels: Sequence[str] | None = None) -> Image.Image:
    """Generator output in [-1, 1] -> the PIL grid image (see `grid_array`)."""
    return _pil(grid_array(to_uint8(images).cpu(), nrow, padding, scale, row_labels))
