"""The API's shapes: request bodies of /generate and /sweep (with the examples the OpenAPI page shows)
and the response models of /models. Bounds come from `service.limits`."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from service.limits import IMAGES_CEILING, PADDING_CEILING, SCALE_CEILING
from shared.imaging.latents import STUDY_SWEEP_DIMS, STUDY_SWEEP_VALUES
from shared.store import NAME_PATTERN, Manifest


def _integral(value):
    """JSON Schema counts 3.0 as an integer; strict pydantic does not. Accept it, and nothing else loosely."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(**bounds):
    """An integer field type: the request models are strict (no "2" for 2, no 0 for false), but this takes
    2.0 as JSON Schema does. The bounds come before the validator so that the schema shows them."""
    return Annotated[int, Field(**bounds), BeforeValidator(_integral)]


ModelName = Annotated[str, StringConstraints(pattern=NAME_PATTERN), Field(
    description="model name in the store (GET /models lists them)", examples=["dcgan"])]
VersionSpec = Union[Literal["latest"], integer(ge=1)]
MAX_SEED = 2**53 - 1  # the largest integer a JSON number holds exactly everywhere (JavaScript included)
DEFAULT_COUNT = 8  # the study's 8 images
SOURCES = ("latent", "latents", "seed")
# The schema's own statement of "at most one source": no two of them together (`count` goes with `seed`)
AT_MOST_ONE_SOURCE = {"not": {"anyOf": [{"required": list(pair)} for pair in (
    ("latent", "latents"), ("latent", "seed"), ("latents", "seed"), ("latent", "count"), ("latents", "count"))]}}


class LatentSource(BaseModel):
    """Where the latents come from: exactly one of `latent`, `latents`, or `seed` (+ `count`)."""

    # NaN and Infinity parse as JSON floats in Python: refuse them here, field by field
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    model: ModelName
    version: VersionSpec = Field("latest", description='"latest" (the newest complete version) or a version number',
                                 examples=["latest", 1])
    # Optional but never null: leave a source out rather than sending null (SkipJsonSchema: no null in the
    # schema). The bounds sit inside the union so that the schema shows them on the array or integer.
    latent: Annotated[list[float], Field(min_length=1)] | SkipJsonSchema[None] = Field(
        None, description="one latent vector (latent_dim floats)")
    latents: Annotated[list[Annotated[list[float], Field(min_length=1)]], Field(min_length=1, max_length=IMAGES_CEILING)] \
        | SkipJsonSchema[None] = Field(None, description="several latent vectors, one image each")
    seed: integer(ge=0, le=MAX_SEED) | SkipJsonSchema[None] = Field(
        None, examples=[0], description="draw `count` N(0,1) latents from this seed (the same on every machine)")
    count: integer(ge=1, le=IMAGES_CEILING) | SkipJsonSchema[None] = Field(
        None, examples=[8], description="how many latents to draw from `seed` (default 8; alone, seed 0)")
    padding: integer(ge=0, le=PADDING_CEILING) = Field(2, description="pixels between images in the grid")
    scale: integer(ge=1, le=SCALE_CEILING) = Field(1, description="integer nearest-neighbour enlargement (1 = the model's size)",
                       examples=[4])

    @field_validator("latent", "latents", "seed", "count", mode="before")
    @classmethod
    def _not_null(cls, value):
        if value is None:
            raise ValueError("must not be null: leave the field out instead")
        return value

    def _sources(self) -> list[str]:
        return [name for name in SOURCES if getattr(self, name) is not None]

    @model_validator(mode="after")
    def _one_source_at_most(self):
        if self.count is not None and self.seed is None:
            if self.latent is not None or self.latents is not None:
                raise ValueError("`count` goes with `seed`: leave it out when giving `latent` or `latents`")
            self.seed = 0
        if self.seed is not None and self.count is None:
            self.count = DEFAULT_COUNT
        if len(self._sources()) > 1:
            raise ValueError(f"give exactly one of `latent`, `latents` or `seed`, not {' and '.join(self._sources())}")
        return self


class GenerateRequest(LatentSource):
    model_config = ConfigDict(json_schema_extra={**AT_MOST_ONE_SOURCE, "anyOf": [
        {"required": [name]} for name in (*SOURCES, "count")], "examples": [
        {"model": "dcgan", "seed": 0, "count": 8, "scale": 4},
        {"model": "gan", "version": 1, "latent": [0.0] * 100, "scale": 8},
    ]})

    nrow: integer(ge=1, le=IMAGES_CEILING) = Field(8, description="images per grid row")

    @model_validator(mode="after")
    def _one_source(self):
        if not self._sources():
            raise ValueError("give one of `latent`, `latents` or `seed` (with `count`)")
        return self


class SweepRequest(LatentSource):
    """The study's experiment: change one latent coordinate at a time over the same base images."""

    model_config = ConfigDict(json_schema_extra={**AT_MOST_ONE_SOURCE, "examples": [
        {"model": "dcgan", "dims": list(STUDY_SWEEP_DIMS), "values": list(STUDY_SWEEP_VALUES), "seed": 0,
         "count": 8, "mode": "set", "labels": True, "scale": 3},
    ]})

    dims: list[integer(ge=0)] = Field(list(STUDY_SWEEP_DIMS), min_length=1, max_length=IMAGES_CEILING,
                                                    description="0-based latent coordinates to sweep, one group of rows each")
    values: list[float] = Field(list(STUDY_SWEEP_VALUES), min_length=1, max_length=IMAGES_CEILING, description="values for each coordinate, one row each")
    mode: Literal["set", "add"] = Field("set", description='"set": replace the coordinate (the study\'s way); "add": offset it')
    labels: bool = Field(True, description="label every row, e.g. z[5]=-3")

    @model_validator(mode="after")
    def _default_base(self):
        if not self._sources():
            self.seed, self.count = 0, DEFAULT_COUNT
        return self


# ---------------------------------------------------------------------- responses
class ModelVersion(BaseModel):
    version: int = Field(description="version number in the store")
    latest: bool = Field(description="whether this is the newest complete version")
    manifest: Manifest = Field(description="the version's manifest.json: how it was trained and measured")


class ModelInfo(BaseModel):
    name: str = Field(examples=["dcgan"])
    latest: int = Field(description="the newest complete version in the store")
    serving: int | None = Field(description='the version "latest" requests get now (null: not loaded yet)')
    loaded: list[int] = Field(description="versions held in memory")
    versions: list[ModelVersion] = Field(description="every complete, verified version, oldest first")


class ModelList(BaseModel):
    models: list[ModelInfo]
