"""Request limits: the ceilings the API schema declares, and the one place requests are checked against
the operator's settings.

The request models' bounds are the `*_CEILING` numbers of `service.api.ceilings`, and the settings may not go
above them;
`tighten_schema` then rewrites those ceilings in the published OpenAPI schema to the operator's settings,
so what the docs page promises and what the service enforces cannot drift apart. What no JSON schema can
say is checked in `RequestLimits` and answered with a 422 in FastAPI's own error shape, whose `type`
names the reason: `model_mismatch` (the latent length or a coordinate the named model does not have),
`limit_exceeded` (a product of fields over MAX_IMAGES or MAX_PIXELS) or `invalid_image` (an upload
that is not a picture).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from service.operations.rejections import LIMIT_EXCEEDED, MODEL_MISMATCH, Refused
from shared.imaging.grids import grid_size

if TYPE_CHECKING:
    from service.api.settings import Settings

# request fields whose bound in the published schema is the operator's setting, not the ceiling
SETTING_BOUNDS = {"count": "max_images", "latents": "max_images", "dims": "max_images", "values": "max_images",
                  "directions": "max_images", "steps": "max_images", "files": "max_images", "scale": "max_scale"}
# where a field of that name means something else: (the schema's component, field) -> setting
COMPONENT_BOUNDS = {("Body_project_project_post", "steps"): "max_project_steps"}


def tighten_schema(schema: dict, settings: "Settings") -> dict:
    """Lower the ceilings of SETTING_BOUNDS' fields, in every request model of an OpenAPI schema, to the settings."""
    for component, model in schema.get("components", {}).get("schemas", {}).items():
        for field, prop in model.get("properties", {}).items():
            setting = COMPONENT_BOUNDS.get((component, field)) or SETTING_BOUNDS.get(field)
            if setting:
                limit = getattr(settings, setting)
                for node in (prop, *prop.get("anyOf", ())):
                    for key in ("maximum", "maxItems"):
                        if key in node:
                            node[key] = min(node[key], limit)
    return schema


class RequestLimits:
    def __init__(self, settings: "Settings") -> None:
        self.max_images = settings.max_images
        self.max_scale = settings.max_scale
        self.max_pixels = settings.max_pixels

    def check_latent_length(self, vector: Sequence[float], latent_dim: int, model_label: str,
                            loc: Sequence[Any]) -> None:
        if len(vector) != latent_dim:
            raise Refused(loc, f"{model_label} takes {latent_dim} numbers, got {len(vector)}", MODEL_MISMATCH)

    def check_grid(self, n: int, image_hw: tuple[int, int], nrow: int, padding: int, scale: int,
                   count_loc: Sequence[Any]) -> None:
        """The whole response: image count, upscaling factor and the PNG's pixel count."""
        if n > self.max_images:
            raise Refused(count_loc, f"{n} images; the most in one request is {self.max_images} (MAX_IMAGES)",
                              LIMIT_EXCEEDED)
        if scale > self.max_scale:
            raise Refused(["scale"], f"scale {scale} is larger than the maximum, {self.max_scale} (MAX_SCALE)",
                              "less_than_equal")
        width, height = grid_size(n, image_hw, nrow, padding, scale)
        if width * height > self.max_pixels:
            raise Refused(["scale"], f"the grid would be {width}x{height} pixels, more than the maximum of "
                                         f"{self.max_pixels} (MAX_PIXELS); lower scale, padding or the number of images",
                              LIMIT_EXCEEDED)
