"""Image batches to grid images: one code path for the trainer's figures and the service.

Everything on tensors is vectorised (no loop over images); only row labels are drawn per row.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) floats in [-1, 1] -> uint8 in [0, 255], on the same device."""
    return images.detach().add(1).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: int = 0) -> torch.Tensor:
    """Tile (N, C, H, W) uint8 images into a (C, rows*(H+p)+p, nrow*(W+p)+p) grid, `nrow` per row.

    Same layout as torchvision.utils.make_grid, without its per-image Python loop.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("no images to tile")
    nrow = max(1, min(nrow, n))
    rows = -(-n // nrow)
    if rows * nrow > n:  # fill the last row with blank cells
        blank = images.new_full((rows * nrow - n, c, h, w), pad_value)
        images = torch.cat([images, blank])
    p = padding
    cells = F.pad(images, (p, 0, p, 0), value=pad_value)  # each cell: padding on top and left
    grid = cells.view(rows, nrow, c, h + p, w + p).permute(2, 0, 3, 1, 4).reshape(c, rows * (h + p), nrow * (w + p))
    return F.pad(grid, (0, p, 0, p), value=pad_value)  # close the bottom and right edges


def upscale(grid: torch.Tensor, scale: int) -> torch.Tensor:
    """Integer nearest-neighbour enlargement of a (C, H, W) image."""
    if scale == 1:
        return grid
    return grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)


def grid_size(n: int, image_hw: tuple[int, int], nrow: int, padding: int, scale: int = 1) -> tuple[int, int]:
    """(width, height) in pixels of the grid `make_grid` + `upscale` would produce, without making it."""
    h, w = image_hw
    nrow = max(1, min(nrow, n))
    rows = -(-n // nrow)
    return ((nrow * (w + padding) + padding) * scale, (rows * (h + padding) + padding) * scale)


def to_pil(grid: torch.Tensor) -> Image.Image:
    """(C, H, W) uint8 with C of 1 or 3 -> a PIL image ('L' or 'RGB')."""
    array = grid.cpu().numpy()
    if array.shape[0] == 1:
        return Image.fromarray(array[0])
    return Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)))


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


def render_grid(
    images: torch.Tensor,
    nrow: int = 8,
    padding: int = 2,
    scale: int = 1,
    row_labels: Sequence[str] | None = None,
    pad_value: int = 0,
) -> Image.Image:
    """Generator output in [-1, 1] -> the PIL grid image, upscaled, optionally with row labels."""
    grid = upscale(make_grid(to_uint8(images), nrow, padding, pad_value), scale)
    image = to_pil(grid)
    if row_labels:
        row_height = (images.shape[2] + padding) * scale
        image = add_row_labels(image, row_labels, row_height, top=padding * scale // 2)
    return image
