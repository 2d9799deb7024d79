"""The API's shapes: request bodies of /generate and /sweep (with the examples the OpenAPI page shows)
and the response models of /models. Bounds come from `service.limits`."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from service.limits import IMAGES_CEILING, PADDING_CEILING, SCALE_CEILING
from shared.imaging.latents import STUDY_SWEEP_DIMS, STUDY_SWEEP_VALUES
from shared.store import NAME_PATTERN, Manifest

ModelName = Annotated[str, StringConstraints(pattern=NAME_PATTERN), Field(
    description="model name in the store (GET /models lists them)", examples=["dcgan"])]
VersionSpec = Union[Literal["latest"], Annotated[int, Field(ge=1)]]
MAX_SEED = 2**63 - 1
DEFAULT_COUNT = 8  # the study's 8 images


class LatentSource(BaseModel):
    """Where the latents come from: exactly one of `latent`, `latents`, or `seed` (+ `count`)."""

    # NaN and Infinity parse as JSON floats in Python: refuse them here, field by field
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: ModelName
    version: VersionSpec = Field("latest", description='"latest" (the newest complete version) or a version number',
                                 examples=["latest", 1])
    latent: list[float] | None = Field(None, min_length=1, description="one latent vector (latent_dim floats)",
                                       examples=[None])
    latents: list[Annotated[list[float], Field(min_length=1)]] | None = Field(
        None, min_length=1, max_length=IMAGES_CEILING, description="several latent vectors, one image each", examples=[None])
    seed: int | None = Field(None, ge=0, le=MAX_SEED, examples=[0],
                             description="draw `count` N(0,1) latents from this seed (the same on every machine)")
    count: int | None = Field(None, ge=1, le=IMAGES_CEILING, examples=[8],
                              description="how many latents to draw from `seed` (default 8; alone, seed 0)")
    padding: int = Field(2, ge=0, le=PADDING_CEILING, description="pixels between images in the grid")
    scale: int = Field(1, ge=1, le=SCALE_CEILING, description="integer nearest-neighbour enlargement (1 = the model's size)",
                       examples=[4])

    def _sources(self) -> list[str]:
        return [name for name in ("latent", "latents", "seed") if getattr(self, name) is not None]

    @model_validator(mode="after")
    def _one_source_at_most(self):
        if self.count is not None and self.seed is None:
            self.seed = 0
        if self.seed is not None and self.count is None:
            self.count = DEFAULT_COUNT
        if len(self._sources()) > 1:
            raise ValueError(f"give exactly one of `latent`, `latents` or `seed`, not {' and '.join(self._sources())}")
        return self


class GenerateRequest(LatentSource):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "dcgan", "seed": 0, "count": 8, "scale": 4},
        {"model": "gan", "version": 1, "latent": [0.0] * 100, "scale": 8},
    ]})

    nrow: int = Field(8, ge=1, le=IMAGES_CEILING, description="images per grid row")

    @model_validator(mode="after")
    def _one_source(self):
        if not self._sources():
            raise ValueError("give one of `latent`, `latents` or `seed` (with `count`)")
        return self


class SweepRequest(LatentSource):
    """The study's experiment: change one latent coordinate at a time over the same base images."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "dcgan", "dims": list(STUDY_SWEEP_DIMS), "values": list(STUDY_SWEEP_VALUES), "seed": 0,
         "count": 8, "mode": "set", "labels": True, "scale": 3},
    ]})

    dims: list[Annotated[int, Field(ge=0)]] = Field(list(STUDY_SWEEP_DIMS), min_length=1, max_length=IMAGES_CEILING,
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
