"""A training run's settings as plain values: everything needed to reproduce it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from shared.errors import UserError


class ConfigError(UserError, ValueError):
    """Settings that cannot work together, or with this machine or saved run."""


@dataclass
class TrainConfig:
    arch: str = "dcgan"
    name: str = ""  # store name; empty means the architecture's name
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    channels: int | None = None  # 1 grey, 3 colour; None: the data's own, set when training starts
    image_size: int | None = None  # square side in pixels; None: the architecture's own
    limit: int | None = None  # train on the first N images only
    conditional: bool = False  # G and D are given each image's class (the dataset's labels)
    class_names: list[str] = field(default_factory=list)  # a conditional run's classes, set when training starts
    device: str = "auto"
    world_size: int = 1  # processes under torchrun; each takes batch_size images of every global batch
    cuda_graphs: str = "auto"  # on | off | auto (on when training on CUDA in one process)
    precision: str = "fp32"  # fp32 | bf16 (autocast; the weights and optimiser stay fp32) | auto (bf16 where native)
    channels_last: bool | None = None  # NHWC conv weights; None: with bf16 (faster there), not in the study's fp32
    # the recipe (trainer.recipe): a preset's name and its components, each overridable; defaults: the study's
    recipe: str = "seed"
    loss: str = "bce"  # bce | hinge
    lr_g: float | None = None  # None: lr
    lr_d: float | None = None
    ema: float = 0.0  # decay of the generator's moving average (0: none)
    ema_warmup: bool = True  # the average's decay ramps up to `ema` over its first updates
    ema_kimg: float = 0.0  # the average's half-life in thousands of images instead of `ema` (0: use `ema`)
    spectral_norm: bool = False  # on every conv/linear of the discriminator
    d_norm: str = "batch"  # the discriminator's normalisation: batch (the study's) | spectral | none
    augment: str = ""  # DiffAugment policies: translation, cutout (comma-separated)
    augment_p: float = 1.0  # probability that an image is augmented
    r1: float = 0.0  # R1 gradient penalty weight on real images (0: none)
    d_steps: int = 1  # discriminator updates per generator update, each on its own batch
    instance_noise: float = 0.0  # std of Gaussian noise on D's inputs at the start, annealed to 0 over the run
    lecam: float = 0.0  # LeCam regularisation weight (0: none)
    class_loss: float = 0.0  # conditional: auxiliary classification loss on D's projection class scores (0: none)
    eval_every: int = 0  # measure the generator every N epochs while training (0: only the published version)
    # the work after training; None: scaled with the run (trainer.budget), set when training starts
    eval_samples: int | None = None  # generated images each measurement uses
    class_samples: int | None = None  # generated images labelled to find the classes' directions (0: none)
    encoder_steps: int | None = None  # steps of the encoder fitted after training (0: no encoder)

    def __post_init__(self) -> None:
        self.name = self.name or self.arch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
