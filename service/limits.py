"""Request limits: the ceilings the API schema declares, and the one place requests are checked against
the operator's settings.

The schema's bounds come from the `*_CEILING` numbers here, and the settings may not go above them, so
what the docs page promises and what the service enforces cannot drift apart. Checks that need the
model (latent length, grid size) or the settings happen in `RequestLimits` and answer 422 in FastAPI's
own error shape.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from fastapi import HTTPException

from shared.imaging.grids import grid_size

if TYPE_CHECKING:
    from service.settings import Settings

# hard ceilings: the schema's bounds, and the highest value each setting accepts
IMAGES_CEILING = 4096  # images in one response
SCALE_CEILING = 64  # integer upscaling factor
PADDING_CEILING = 64  # pixels between grid cells


def field_error(loc: Sequence[Any], message: str) -> HTTPException:
    """A 422 in FastAPI's own validation-error shape, for checks that need the model or the settings."""
    return HTTPException(422, detail=[{"type": "value_error", "loc": ["body", *loc], "msg": message}])


class RequestLimits:
    def __init__(self, settings: "Settings") -> None:
        self.max_images = settings.max_images
        self.max_scale = settings.max_scale
        self.max_pixels = settings.max_pixels

    def check_latent_length(self, vector: Sequence[float], latent_dim: int, model_label: str,
                            loc: Sequence[Any]) -> None:
        if len(vector) != latent_dim:
            raise field_error(loc, f"{model_label} takes {latent_dim} numbers, got {len(vector)}")

    def check_grid(self, n: int, image_hw: tuple[int, int], nrow: int, padding: int, scale: int,
                   count_loc: Sequence[Any]) -> None:
        """The whole response: image count, upscaling factor and the PNG's pixel count."""
        if n > self.max_images:
            raise field_error(count_loc, f"{n} images; the most in one request is {self.max_images} (MAX_IMAGES)")
        if scale > self.max_scale:
            raise field_error(["scale"], f"scale {scale} is larger than the maximum, {self.max_scale} (MAX_SCALE)")
        width, height = grid_size(n, image_hw, nrow, padding, scale)
        if width * height > self.max_pixels:
            raise field_error(["scale"], f"the grid would be {width}x{height} pixels, more than the maximum of "
                                         f"{self.max_pixels} (MAX_PIXELS); lower scale, padding or the number of images")
