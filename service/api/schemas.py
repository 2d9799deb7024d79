"""The API's shapes: request bodies (with the examples the OpenAPI page shows) and the JSON responses.
Bounds come from `service.api.limits`."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from service.api.ceilings import IMAGES_CEILING, PADDING_CEILING, SCALE_CEILING
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
SOURCE_PAIRS = (("latent", "latents"), ("latent", "seed"), ("latents", "seed"), ("latent", "count"),
                ("latents", "count"))
Padding = integer(ge=0, le=PADDING_CEILING)
Scale = integer(ge=1, le=SCALE_CEILING)
ClassRef = Union[Annotated[str, StringConstraints(min_length=1, max_length=64)], integer(ge=0, le=255)]
Truncation = Annotated[float, Field(gt=0, le=1)]
TRUNCATION_DOC = ("pull the latents towards the mean latent (0, or the class's mean with `class`) by this factor: "
                  "1 leaves them as they are, smaller values give more typical, less varied images (StyleGAN's "
                  "truncation trick)")


def none_together(*pairs: tuple[str, str], needs_one_of: tuple[str, ...] = ()) -> dict:
    """The schema's statement that no two fields of a pair come together (and, with `needs_one_of`, that one of
    those fields must be there), as a single `not` beside the properties: validators and Schemathesis apply it,
    while client generators, which cannot express it, leave it out and still type every field. (A root `anyOf`
    of `required` lists makes them type the whole body as Any.)"""
    refused = [{"required": list(pair)} for pair in pairs]
    if needs_one_of:
        refused.append({"not": {"anyOf": [{"required": [name]} for name in needs_one_of]}})
    return {"not": {"anyOf": refused}}


def never_null(value):
    """Optional fields are left out, not sent as null (SkipJsonSchema keeps null out of the schema too)."""
    if value is None:
        raise ValueError("must not be null: leave the field out instead")
    return value


class Strict(BaseModel):
    # strict types; NaN and Infinity parse as JSON floats in Python: refuse them here, field by field
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class ModelRef(Strict):
    model: ModelName
    version: VersionSpec = Field("latest", description='"latest" (the newest complete version) or a version number',
                                 examples=["latest", 1])


class LatentSource(ModelRef):
    """Where the latents come from: exactly one of `latent`, `latents`, or `seed` (+ `count`)."""

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
    padding: Padding = Field(2, description="pixels between images in the grid")
    scale: Scale = Field(1, description="integer nearest-neighbour enlargement (1 = the model's size)", examples=[4])

    _not_null = field_validator("latent", "latents", "seed", "count", mode="before")(never_null)

    def _sources(self) -> list[str]:
        return [name for name in SOURCES if getattr(self, name) is not None]

    @property
    def image_count(self) -> int:
        """How many latents the source gives, without drawing them."""
        return 1 if self.latent is not None else len(self.latents) if self.latents is not None else self.count

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
    """Where the images come from: exactly one of `latent`, `latents`, or `seed` (with `count`); or a `class`
    (with `seed` and `count`, or alone: seed 0)."""

    model_config = ConfigDict(json_schema_extra={
        **none_together(*SOURCE_PAIRS, ("class", "latent"), ("class", "latents"),
                        needs_one_of=(*SOURCES, "count", "class")), "examples": [
            {"model": "dcgan", "seed": 0, "count": 8, "scale": 4},
            {"model": "dcgan", "class": "Trouser", "seed": 3, "count": 8, "scale": 4},
            {"model": "gan", "version": 1, "latent": [0.0] * 100, "scale": 8},
        ]})

    nrow: integer(ge=1, le=IMAGES_CEILING) = Field(8, description="images per grid row")
    class_: ClassRef | SkipJsonSchema[None] = Field(
        None, alias="class", description="only images of this class (a name, e.g. \"Trouser\", or an index; GET "
                                         "/models/{name}/classes lists them), drawn from `seed`. A class-conditional "
                                         "version is given the class (exact, at the cost of any request); another "
                                         "draws candidates the latent space puts in the class and keeps those the "
                                         "version's classifier agrees with")
    truncation: Truncation | SkipJsonSchema[None] = Field(None, description=TRUNCATION_DOC, examples=[0.7])

    _class_not_null = field_validator("class_", "truncation", mode="before")(never_null)

    @model_validator(mode="after")
    def _one_source(self):
        if self.class_ is not None:
            if self.latent is not None or self.latents is not None:
                raise ValueError("`class` draws its latents from `seed`: leave out `latent` and `latents`")
            if self.seed is None:
                self.seed, self.count = 0, self.count or DEFAULT_COUNT
        if not self._sources():
            raise ValueError("give one of `latent`, `latents` or `seed` (with `count`), or a `class`")
        return self


class SweepRequest(LatentSource):
    """The study's experiment: change one latent coordinate at a time over the same base images; or, with
    `directions`, move along semantic directions (`GET /models/{name}/directions`) instead."""

    model_config = ConfigDict(json_schema_extra={**none_together(*SOURCE_PAIRS, ("dims", "directions"),
                                                                 ("dims", "classes"), ("directions", "classes")),
                                                 "examples": [
        {"model": "dcgan", "dims": list(STUDY_SWEEP_DIMS), "values": list(STUDY_SWEEP_VALUES), "seed": 0,
         "count": 8, "mode": "set", "labels": True, "scale": 3},
        {"model": "dcgan", "directions": [0, 1, 2], "values": [-6, -3, 0, 3, 6], "seed": 0, "count": 6, "mode": "add",
         "scale": 3},
        {"model": "dcgan", "classes": ["Sneaker", "Trouser"], "values": [0, 2, 4, 6], "seed": 0, "count": 6,
         "mode": "add", "scale": 3},
    ]})

    dims: list[integer(ge=0)] = Field(list(STUDY_SWEEP_DIMS), min_length=1, max_length=IMAGES_CEILING,
                                      description="0-based latent coordinates to sweep, one group of rows each")
    directions: Annotated[list[integer(ge=0)], Field(min_length=1, max_length=IMAGES_CEILING)] | SkipJsonSchema[None] = Field(
        None, description="instead of `dims`: semantic directions by rank (0 = strongest), one group of rows each; "
                          "rows are labelled d[i]=v")
    classes: Annotated[list[ClassRef], Field(min_length=1, max_length=256)] | SkipJsonSchema[None] = Field(
        None, description="instead of `dims`: move towards classes (names or indices, GET /models/{name}/classes), "
                          "along each class's boundary normal; rows are labelled Sneaker+=3")
    values: list[float] = Field(list(STUDY_SWEEP_VALUES), min_length=1, max_length=IMAGES_CEILING,
                                description="values for each coordinate, direction or class, one row each")
    truncation: Truncation | SkipJsonSchema[None] = Field(None, description="pull the base latents towards the mean "
                                                          "latent (0) by this factor before sweeping (1: as they are)")
    mode: Literal["set", "add"] = Field("set", description='"set": replace the coordinate (the study\'s way), or the '
                                                           'projection on the direction; "add": offset it')
    labels: bool = Field(True, description="label every row, e.g. z[5]=-3")

    _directions_not_null = field_validator("directions", "classes", "truncation", mode="before")(never_null)

    @model_validator(mode="after")
    def _default_base(self):
        if not self._sources():
            self.seed, self.count = 0, DEFAULT_COUNT
        chosen = [name for name in ("dims", "directions", "classes") if name in self.model_fields_set]
        if len(chosen) > 1:
            raise ValueError(f"give one of `dims`, `directions` or `classes`, not {' and '.join(chosen)}")
        return self

    @property
    def along(self) -> str:
        """What the rows move along: "dims", "directions" or "classes"."""
        return "classes" if self.classes is not None else "directions" if self.directions is not None else "dims"


class LatentRef(Strict):
    """One latent: given outright, or the `index`-th of the latents `seed` draws (image `index` of the grid
    that `/generate` makes from that seed)."""

    model_config = ConfigDict(json_schema_extra={**none_together(("latent", "seed"), ("latent", "index"),
                                                               needs_one_of=("latent", "seed")),
                                                 "examples": [{"seed": 0, "index": 3}]})

    latent: Annotated[list[float], Field(min_length=1)] | SkipJsonSchema[None] = Field(
        None, description="the latent vector (latent_dim floats)")
    seed: integer(ge=0, le=MAX_SEED) | SkipJsonSchema[None] = Field(None, examples=[0], description="a latent seed")
    index: integer(ge=0, le=IMAGES_CEILING - 1) | SkipJsonSchema[None] = Field(
        None, examples=[3], description="which of the seed's latents (default 0)")
    class_: ClassRef | SkipJsonSchema[None] = Field(
        None, alias="class", description="a class-conditional version only: this class (a name or an index), with "
                                         "the latent's z: an interpolation from one class to another")

    _not_null = field_validator("latent", "seed", "index", "class_", mode="before")(never_null)

    @model_validator(mode="after")
    def _one_way(self):
        if (self.latent is None) == (self.seed is None):
            raise ValueError("give `latent`, or `seed` (with `index`), not both and not neither")
        if self.latent is not None and self.index is not None:
            raise ValueError("`index` goes with `seed`")
        return self


class InterpolateRequest(ModelRef):
    """A path from one latent to another, as a PNG grid or a looping animation."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "dcgan", "start": {"seed": 0, "index": 0}, "end": {"seed": 0, "index": 1}, "steps": 8,
         "method": "slerp", "format": "png", "scale": 3},
        {"model": "dcgan", "start": {"seed": 0, "index": 2}, "end": {"seed": 7, "index": 5}, "steps": 24,
         "format": "gif", "frame_ms": 80, "scale": 4},
    ]})

    start: LatentRef = Field(description="where the path starts")
    end: LatentRef = Field(description="where it ends")
    steps: integer(ge=2, le=IMAGES_CEILING) = Field(8, description="images along the path, both ends included")
    method: Literal["slerp", "lerp"] = Field(
        "slerp", description="slerp: along the great circle, length changing linearly (Gaussian latents live near a "
                             "sphere); lerp: the straight line")
    format: Literal["png", "gif", "webp"] = Field(
        "png", description="png: the steps as a grid; gif, webp: an animation that loops, one frame per step")
    frame_ms: integer(ge=20, le=10_000) = Field(100, description="milliseconds per frame of an animation")
    nrow: integer(ge=1, le=IMAGES_CEILING) | SkipJsonSchema[None] = Field(
        None, description="images per grid row of a png (default: all in one row)")
    padding: Padding = Field(2, description="pixels between images in the grid (png)")
    scale: Scale = Field(1, description="integer nearest-neighbour enlargement", examples=[4])
    truncation: Truncation | SkipJsonSchema[None] = Field(None, description="pull both ends towards the mean "
                                                          "latent (0) by this factor first (1: as they are)")

    _not_null = field_validator("nrow", "truncation", mode="before")(never_null)


# ---------------------------------------------------------------------- responses
class ModelVersion(BaseModel):
    version: int = Field(description="version number in the store")
    latest: bool = Field(description="whether this is the newest complete version")
    manifest: Manifest = Field(description="the version's manifest.json: how it was trained and measured")


class ServedBucket(BaseModel):
    """What runs the forwards of one batch size."""

    batch: int = Field(description="batches of up to this many latents (and more than the bucket before)")
    runtime: Literal["torchscript", "export", "onnxruntime", "openvino"]
    precision: Literal["fp32", "bf16"]
    forward_ms: float = Field(description="its median forward at this batch size, measured at warm-up")


class GreyDiff(BaseModel):
    max: int = Field(description="largest difference of one pixel, in grey levels (0-255)")
    mean: float = Field(description="mean difference per pixel, in grey levels")


class ServedRuntimes(BaseModel):
    """How a loaded version's generator runs, and why (RUNTIME and PRECISION; chosen when the version was loaded)."""

    version: int
    runtime: str = Field(description="what runs its forwards; several joined by + where batch sizes differ",
                         examples=["onnxruntime+torchscript"])
    precision: str = Field(description="what its forwards compute in: fp32, bf16, or fp32+bf16 where batch sizes "
                                       "differ")
    runtime_asked: Literal["auto", "torchscript", "export", "onnxruntime", "openvino"] = Field(
        description="the RUNTIME setting")
    precision_asked: Literal["auto", "fp32", "bf16"] = Field(description="the PRECISION setting")
    native_bf16: str | None = Field(description="what computes bf16 natively on the device (amx_bf16, avx512_bf16, "
                                                "cuda sm_80...), null: nothing")
    reason: str = Field(description="why these", examples=["fastest measured at each batch size: 1: onnxruntime fp32 "
                                                           "0.91 ms, 2: ..."])
    buckets: list[ServedBucket] = Field(description="what runs each batch size, smallest first")
    forward_ms: dict[str, dict[str, float]] = Field(
        description="the warm-up's median milliseconds of one forward, by candidate (runtime and precision) and "
                    "batch size")
    grey_diff: dict[str, GreyDiff] = Field(description="each candidate's pixels against the fp32 reference's on the "
                                           "same latents (only when several were compared)")
    left_out: list[str] = Field(description="runtimes and candidates not used, and why")


class DamagedVersionInfo(BaseModel):
    """A version whose files on disk no longer match its manifest (a bad disk, a bad copy)."""

    version: int
    file: str = Field(description="the first file that fails, relative to the version's directory",
                      examples=["generator.pt"])
    problem: Literal["unreadable manifest", "missing", "unreadable", "size", "sha256"]
    expected: str | None = Field(description="what the manifest lists (a sha256, or a size)")
    found: str | None = Field(description="what is on disk now")
    served_from_memory: bool = Field(description="whether this replica loaded it before the damage and still serves "
                                                 "it (a copy in memory is intact); else it is not served")
    detail: str = Field(description="what is wrong and what to do about it")


class ModelInfo(BaseModel):
    name: str = Field(examples=["dcgan"])
    latest: int | None = Field(description="the newest complete version in the store (null: only damaged ones)")
    serving: int | None = Field(description='the version "latest" requests get now (null: not loaded yet)')
    loaded: list[int] = Field(description="versions held in memory")
    runtimes: list[ServedRuntimes] = Field(description="how each loaded version's forwards run, in the order of "
                                                       "`loaded`")
    versions: list[ModelVersion] = Field(description="every complete, verified version, oldest first")
    damaged: list[DamagedVersionInfo] = Field(default_factory=list, description="versions whose files no longer "
                                              "match their manifest, oldest first")


class ModelList(BaseModel):
    models: list[ModelInfo]


class ServedVersion(BaseModel):
    """What an answer came from: the model and the resolved version."""

    model: str = Field(examples=["dcgan"])
    version: int


class DirectionList(ServedVersion):
    layer: str = Field(description="the generator's first layer, which the directions come from",
                       examples=["main.0 (ConvTranspose2d)"])
    eigenvalues: list[float] = Field(description="how much the first layer stretches each direction, descending")
    directions: list[list[float]] = Field(description="unit vectors (latent_dim floats each), strongest first, "
                                                      "orthogonal to each other")


class SeededLatent(BaseModel):
    seed: int
    index: int
    latent: list[float] = Field(description="the index-th N(0,1) latent drawn from seed (NumPy PCG64)")


class Score(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    filename: str = Field(description="the uploaded file's name")
    logit: float = Field(description="the discriminator's raw output")
    probability: float = Field(description="sigmoid(logit): how real the discriminator finds the image")
    class_: str | None = Field(None, alias="class", description="a class-conditional version only: the class the "
                                                                "image was judged as (the one given, or the one the "
                                                                "version's classifier sees)")


class ScoreList(ServedVersion):
    image_shape: list[int] = Field(description="what each image was converted to (channels, height, width)")
    scores: list[Score]


class TrainingHistory(ServedVersion):
    iterations_per_epoch: int | None = Field(description="training steps in an epoch")
    steps: dict[str, list[float]] = Field(description="the training curves, one list per column of the version's "
                                                      "report/history.csv: iteration, epoch, loss_D, loss_G, D_x "
                                                      "(D's mean output on real images), D_G_z (on generated ones)")
    quality: list[dict] = Field(description="the sample quality measured while training (--eval-every), epoch by epoch")


class StageLosses(BaseModel):
    pixel: float = Field(description="mean squared error of the pixels, in [-1, 1]")
    features: float = Field(description="mean squared distance of the images' features in the version's classifier "
                                        "(0 without one)")
    total: float = Field(description="what the search minimises: pixel + 0.1 x features")


class ProjectionResult(ServedVersion):
    latent: list[float] = Field(description="the latent found: post it back as `latent`, or open it in the explorer")
    start: Literal["encoder", "mean latent"] = Field(description="where the search started: the version's encoder's "
                                                                 "guess, or the mean latent for a version without one")
    steps: int = Field(description="optimisation steps run after the first guess")
    seconds: float = Field(description="time the projection took on the service's device")
    losses: dict[Literal["start", "final"], StageLosses] = Field(description="the reconstruction's loss at the first "
                                                                             "guess and at the end")
    class_: str | None = Field(None, alias="class", description="a class-conditional version only: the class held "
                                                                "during the search (the one given, or the picture's "
                                                                "as the version's classifier sees it)")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ClassInfo(BaseModel):
    index: int
    name: str = Field(examples=["Trouser"])
    share: float = Field(description="how common the class is among the model's samples")
    accuracy: float | None = Field(description="held-out balanced accuracy of the boundary between the class and the "
                                               "rest in latent space (null: too rare among the samples to tell)")
    direction: list[float] = Field(description="unit normal of that boundary: moving a latent along it moves its image "
                                               "towards the class (POST /sweep with `classes`)")


class ClassList(ServedVersion):
    classifier: dict = Field(description="the image classifier that labelled the samples and checks class requests")
    samples: int = Field(description="generated images labelled to find the classes")
    latent_accuracy: float = Field(description="held-out accuracy of the latent space's softmax over the classes")
    classes: list[ClassInfo]


class ClassLatents(ServedVersion):
    class_: str = Field(alias="class", description="the class's name")
    seed: int
    latents: list[list[float]] = Field(description="the latents of the images `POST /generate` with this class, seed "
                                                   "and count returns, in its grid's order")
    verified: int = Field(description="how many of them the classifier put in the class (the rest: the likeliest of "
                                      "the others, when the model makes too few)")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
