"""`classes.json`: what a version's latent space means, in the classes of the data it was trained on.

The trainer labels many generated images with the project's classifier and fits, in latent space, a softmax
over the classes (which class a latent's image is likely to be) and, for each class, a linear boundary
between it and the rest (InterFaceGAN): its unit normal is the direction that moves a latent towards the
class. The service reads this file, with the version's `classifier.pt`, to answer class requests, class
sweeps and truncation towards a class's mean, without any trainer code. Plain lists of numbers: readable
without torch, and hashed with the version's other files.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

FORMAT = 1


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class ClassBoundary(_Record):
    index: int = Field(ge=0, description="the class's index in the classifier's output")
    name: str
    share: float = Field(ge=0, le=1, description="how common the class is among the model's samples")
    accuracy: float | None = Field(ge=0, le=1, description="held-out balanced accuracy of the class-vs-rest boundary "
                                                           "(null: the class is too rare among the samples to tell)")
    direction: list[float] = Field(description="unit normal of the boundary: moving a latent along it moves its image "
                                               "towards the class")
    offset: float = Field(description="the boundary is direction . z + offset = 0 (positive: the class's side)")
    mean: list[float] = Field(description="the mean latent of the samples labelled with the class")


class LatentClassifier(_Record):
    """A softmax over the classes in latent space: logits = weights @ z + bias."""

    weights: list[list[float]] = Field(description="(classes, latent_dim)")
    bias: list[float]
    held_out_accuracy: float = Field(ge=0, le=1)


class ClassSemantics(_Record):
    format: int = FORMAT
    classifier: dict = Field(description="the image classifier that labelled the samples (name, sha256, accuracy)")
    samples: int = Field(ge=1, description="generated images labelled to fit the boundaries")
    latent_seed: int
    latent_dim: int = Field(ge=1)
    latent_classifier: LatentClassifier
    classes: list[ClassBoundary]

    def find(self, ref: str | int) -> ClassBoundary | None:
        """A class by name (any case) or index."""
        if isinstance(ref, int):
            return self.classes[ref] if 0 <= ref < len(self.classes) else None
        return next((c for c in self.classes if c.name.lower() == ref.lower()), None)
