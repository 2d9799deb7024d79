"""What the image routes return: the PNG (or animation), the images split back out of it, and what made them."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageSequence


@dataclass(frozen=True)
class Grid:
    """The X-Grid header: how the service laid the images out."""

    columns: int
    rows: int
    cell: tuple[int, int]  # (height, width) of one image, before scaling
    padding: int
    scale: int

    @classmethod
    def parse(cls, header: str) -> "Grid":
        fields = dict(part.strip().split("=", 1) for part in header.split(";"))
        h, w = (int(v) for v in fields["cell"].split("x"))
        return cls(int(fields["columns"]), int(fields["rows"]), (h, w), int(fields["padding"]), int(fields["scale"]))

    def split(self, grid: np.ndarray, count: int) -> np.ndarray:
        """(count, H, W[, C]) images at the model's size out of an (H, W[, C]) grid image: exact, since the
        grid is the images tiled, padded and enlarged by whole pixels. A left margin (row labels) is skipped."""
        (h, w), p, s = self.cell, self.padding, self.scale
        left = grid.shape[1] - (self.columns * (w + p) + p) * s
        cells = [grid[(p + r * (h + p)) * s:(p + r * (h + p) + h) * s:s,
                      left + (p + c * (w + p)) * s:left + (p + c * (w + p) + w) * s:s]
                 for r in range(self.rows) for c in range(self.columns)]
        return np.stack(cells[:count])


@dataclass(frozen=True)
class ImageResult:
    """An image answer. `image`: the PNG grid (or the animation's first frame) as a PIL image; `images`: the
    individual images as uint8 (N, H, W) for grayscale models or (N, H, W, C), at the model's size, exactly
    the service's pixels (for an animation: its frames); `data`: the bytes as sent."""

    data: bytes
    media_type: str
    model: str
    version: int
    images: np.ndarray
    headers: dict[str, str] = field(repr=False)

    @property
    def image(self) -> Image.Image:
        image = Image.open(io.BytesIO(self.data))
        image.load()
        return image

    def save(self, path) -> None:
        """Write the bytes as sent (a .png, .gif or .webp, as `media_type` says)."""
        with open(path, "wb") as f:
            f.write(self.data)

    def __repr__(self) -> str:
        shape = "x".join(str(n) for n in self.images.shape[1:])
        return (f"ImageResult({self.model} v{self.version}: {len(self.images)} images of {shape}, {self.media_type}, "
                f"{len(self.data):,} bytes)")

    def _repr_png_(self) -> bytes | None:  # notebooks show the result itself as the picture
        return self.data if self.media_type == "image/png" else None

    @classmethod
    def from_response(cls, data: bytes, headers: dict[str, str], scale: int = 1) -> "ImageResult":
        """From the bytes and headers of a 200; `scale`: the request's, for an animation (a grid says its own)."""
        media_type = headers.get("content-type", "image/png").split(";")[0]
        image = Image.open(io.BytesIO(data))
        if "x-grid" in headers:
            images = Grid.parse(headers["x-grid"]).split(np.asarray(image), int(headers["x-image-count"]))
        else:
            images = frames(image)[:, ::scale, ::scale]
        return cls(data, media_type, headers.get("x-model", ""), int(headers.get("x-model-version", 0)), images,
                   dict(headers))


def frames(animation: Image.Image) -> np.ndarray:
    """An animation's frames as uint8 (N, H, W) when gray, else (N, H, W, 3)."""
    rgb = np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(animation)])
    gray = (rgb[..., :1] == rgb).all()
    return rgb[..., 0] if gray else rgb
