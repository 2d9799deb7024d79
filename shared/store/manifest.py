"""The manifest of a stored version: what the trainer writes, the store checks and every reader uses.

`manifest.json` is the contract between the two halves, so it is typed here once. The trainer states
a `ManifestDraft`; `Store.publish` validates it before anything is claimed and completes it into a
`Manifest`; the service, `python -m shared`
and the evaluator read fields by attribute; `GET /models` declares it as its response model, so the API
docs show this schema. Fields the store itself needs (identity, shapes, files) are required; the
training record is optional, so versions published by hand or by older trainers still load. Unknown
fields are kept, not refused: a manifest written by a newer trainer stays readable by an older service.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.store.layout import NAME_PATTERN, generator_file

FORMAT_VERSION = 1
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=0, description="bytes")
    sha256: str = Field(pattern=SHA256_PATTERN, description="hex digest of the file's bytes")


class ParameterCounts(_Record):
    generator: int = Field(ge=0)
    discriminator: int = Field(ge=0)


class FeatureNet(_Record):
    name: str
    sha256: str
    test_accuracy: float
    note: str = ""


class Quality(_Record):
    """Sample-quality numbers of `python -m trainer.evaluate`: the SWD for any dataset; the rest in the FashionMNIST
    classifier's feature space, for FashionMNIST models only (absent for others)."""

    fid: float | None = Field(None, description="Frechet distance in the classifier's feature space; lower is better")
    kid: float | None = Field(None, description="kernel inception distance (unbiased MMD^2), mean over subsets")
    kid_std: float | None = None
    precision: float | None = Field(None, description="share of generated images inside the real manifold")
    recall: float | None = Field(None, description="share of real images inside the generated manifold")
    class_histogram: list[float] | None = Field(None, description="share of generated images per predicted class")
    class_entropy: float | None = Field(None, description="entropy of class_histogram, normalised to [0, 1]")
    mean_confidence: float | None = None
    swd: float | None = Field(None, description="sliced Wasserstein distance x 1,000 on Laplacian-pyramid patches "
                                                "(Karras et al. 2018) against the reference images, averaged over "
                                                "the levels; lower is better")
    swd_levels: dict[str, float] | None = Field(None, description="the SWD per pyramid level, keyed by its side "
                                                                  "in pixels (full size first)")
    inception_fid: float | None = Field(None, description="FID on Inception-v3 pool features (torchvision's weights), "
                                                          "where they were on the machine")
    inception_kid: float | None = None


class Metrics(Quality):
    samples: int = Field(ge=1)
    latent_seed: int
    k: int | None = Field(None, ge=1, description="neighbourhood size of precision and recall")
    reference: str
    feature_net: FeatureNet | None = None
    real_floor: dict[str, Any] | None = Field(None, description="the classifier's metrics for real training images: "
                                                                "what a perfect generator would reach")
    device: str
    seconds: float
    evaluated_at: str


class ManifestDraft(_Record):
    """What a publisher states about a version; the store adds its identity and the file list."""

    architecture: str = Field(description="the trainer's architecture (gan, dcgan, ...)", examples=["dcgan"])
    latent_dim: int = Field(ge=1, description="length of the generator's input vectors", examples=[100])
    image_shape: tuple[int, int, int] = Field(description="(channels, height, width) of the generator's output",
                                              examples=[[1, 32, 32]])
    conditional: bool = Field(False, description="whether the generator is class-conditional: its input is z "
                                                 "(style_dim numbers) then one weight per class of class_names, a "
                                                 "one-hot for one class (latent_dim = style_dim + classes)")
    class_names: list[str] | None = Field(None, description="a conditional version's classes, in the order of its "
                                                            "input's class weights", examples=[["Trouser", "Dress"]])
    style_dim: int | None = Field(None, ge=1, description="z: the first style_dim numbers of the generator's input "
                                                          "(all of them when it is not conditional; versions made "
                                                          "before it was written for those leave it out)")

    # the training record: optional, absent from versions published by hand
    dataset: str | None = None
    num_images: int | None = None
    epochs: int | None = None
    batch_size: int | None = None  # per process
    world_size: int | None = Field(None, description="training processes (torchrun ranks)")
    global_batch_size: int | None = Field(None, description="images per step over all processes")
    precision: str | None = Field(None, description="fp32, or bf16 autocast with fp32 weights")
    cuda_graphs: bool | None = Field(None, description="whether full training steps ran as a captured CUDA graph")
    last_partial_batch: str | None = Field(None, description="what happened to each epoch's last partial batch")
    learning_rate: float | None = None
    recipe: dict[str, Any] | None = Field(None, description="the training recipe: its name and every component's "
                                                            "setting (loss, lr_g, lr_d, ema, spectral_norm, augment, "
                                                            "augment_p, r1)")
    betas: tuple[float, float] | None = None
    seed: int | None = None
    limit: int | None = None
    torch_version: str | None = None
    trained_on: str | None = Field(None, description="the training device")
    train_seconds: float | None = None
    iterations: int | None = None
    parameters: ParameterCounts | None = None
    generator_io: dict[str, Any] | None = None
    discriminator_output: str | None = None
    export_max_abs_diff: dict[str, float] | None = Field(None, description="each TorchScript network's largest "
                                                                       "difference from the eager model at publish")
    forms: dict[str, dict[str, float]] | None = Field(
        None, description="each network's forms beside TorchScript (export: a torch.export program, <network>.pt2; "
                          "onnx: ONNX, <network>.onnx), each with its largest difference from the eager model at "
                          "publish; versions made before them have none", examples=[{"generator": {"export": 0.0,
                                                                                               "onnx": 5.2e-08}}])
    final_epoch_means: dict[str, float] | None = None
    encoder: dict[str, Any] | None = Field(None, description="how encoder.pt was fitted (steps, seconds, losses), "
                                                           "when the version has one")
    quality_history: list[dict[str, Any]] | None = Field(
        None, description="the sample quality measured while training (--eval-every): epoch, fid, kid, precision, "
                          "recall, class_entropy, mean_confidence, seconds")
    config: dict[str, Any] | None = Field(None, description="the full training configuration")
    command: list[str] | None = None
    metrics: Metrics | None = Field(None, description="sample quality, once the version has been evaluated")

    @model_validator(mode="after")
    def _conditional_input(self) -> "ManifestDraft":
        if self.conditional and not (self.class_names and len(self.class_names) >= 2 and self.style_dim
                                     and self.style_dim + len(self.class_names) == self.latent_dim):
            raise ValueError("a conditional version needs class_names (at least two) and style_dim, with latent_dim "
                             "= style_dim + the number of classes")
        if not self.conditional and self.style_dim not in (None, self.latent_dim):
            raise ValueError("an unconditional version's style_dim is its latent_dim: all of its input is z")
        return self


IDENTITY_FIELDS = ("format", "name", "version", "created_at")
STORE_FIELDS = {*IDENTITY_FIELDS, "files"}  # what the store writes itself: a draft's values for these are ignored


class Manifest(ManifestDraft):
    """`manifest.json` of one version."""

    format: int = Field(FORMAT_VERSION, description="manifest format number")
    name: str = Field(pattern=NAME_PATTERN, examples=["dcgan"])
    version: int = Field(ge=1)
    created_at: str = Field(description="UTC, ISO 8601", examples=["2026-11-27T08:00:00Z"])
    files: dict[str, FileEntry] = Field(description="every file of the version but the manifest, by relative path")

    def to_json(self) -> str:
        """The file's text: identity first, then what the publisher stated, then the file list."""
        data = self.model_dump(mode="json", exclude_unset=True)  # fields a publisher never stated stay absent
        identity = {k: data.pop(k, getattr(self, k)) for k in IDENTITY_FIELDS}  # `format` may be a default
        ordered = identity | {k: v for k, v in data.items() if k != "files"}
        return json.dumps({**ordered, "files": data["files"]}, indent=2) + "\n"

    @property
    def input_classes(self) -> int:
        """The class weights at the end of the generator's input: the number of classes, 0 if unconditional."""
        return len(self.class_names or ()) if self.conditional else 0

    def class_index(self, ref: str | int) -> int:
        """A conditional version's class by name (any case) or index (an int, or its digits); a LookupError
        whose message names every class when there is none."""
        names = self.class_names or []
        if isinstance(ref, int) or ref.isdigit():
            index = int(ref)
        else:
            index = next((i for i, name in enumerate(names) if name.lower() == ref.lower()), -1)
        if 0 <= index < len(names):
            return index
        raise LookupError(f"no class {ref!r}; the classes are {', '.join(f'{i} {n!r}' for i, n in enumerate(names))}")

    @property
    def generator_sha256(self) -> str:
        return self.files[generator_file(self.files)].sha256
