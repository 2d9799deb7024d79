"""A training run's settings as plain values: everything needed to reproduce it. Frozen: what a run resolves
from a saved state, its data and machine (trainer.training.loop.resolve) makes a new config, recorded as trained."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from shared.errors import UserError
from trainer.training.settings import RecipeSettings, RunSettings, canonical


class ConfigError(UserError, ValueError):
    """Settings that cannot work together, or with this machine or saved run."""


@dataclass(frozen=True)
class TrainConfig(RecipeSettings, RunSettings):
    """A run's settings: the recipe's and the run's (declared, with their flags, in trainer.training.settings) and
    these, which the commands set."""

    arch: str = "dcgan"
    name: str = ""  # store name; empty means the architecture's name
    epochs: int = 5
    minutes: float | None = None  # a time budget: stop at the end of the step in which this much training has passed
    class_names: list[str] = field(default_factory=list)  # a conditional run's classes, set when training starts
    world_size: int = 1  # processes under torchrun; each takes batch_size images of every global batch
    channels_last: bool | None = None  # NHWC conv weights; None: with bf16 (faster there), not in the study's fp32
    recipe: str = "study"  # the preset the recipe's settings started from, or a recipe file's name (trainer.training.settings)
    recipe_source: dict = field(default_factory=dict)  # a recipe file's provenance: the file, the study and trial
    eval_every: int = 0  # measure the generator every N epochs while training (0: only the published version)
    # the work after training; None: scaled with the run (trainer.training.budget), set when training starts
    eval_samples: int | None = None  # generated images each measurement uses
    class_samples: int | None = None  # generated images labelled to find the classes' directions (0: none)
    encoder_steps: int | None = None  # steps of the encoder fitted after training (0: no encoder)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name or self.arch)
        object.__setattr__(self, "recipe", canonical(self.recipe))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
