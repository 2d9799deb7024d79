"""The discriminator's judgement of uploaded pictures: each made the version's size and channels, judged by its
`discriminator.pt` (a conditional version's with each picture's class: the one given, else the classifier's)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.engine import Engine
from service.engine.registry import LoadedModel
from service.operations import given_classes
from service.operations.uploads import decode


@dataclass(frozen=True)
class Scores:
    logits: np.ndarray  # (N,) D's raw outputs
    probabilities: np.ndarray  # (N,) their sigmoid: how real D finds each picture
    classes: list[str] | None  # a conditional version's: the class each picture was judged as


def score_uploads(engine: Engine, model: LoadedModel, uploads: list[bytes], label: int | None,
                  max_pixels: int) -> Scores:
    """D's judgement of each upload, a conditional version's with class `label` (None: each picture's own, by the
    version's classifier; `given_classes.form_class` reads a request's). Blocking (decoding, the classifier, D): call
    it from a worker thread. Raises NotFound when the version was published without a discriminator."""
    channels, size = model.image_shape[0], model.image_shape[1]
    images = np.stack([decode(data, ["files", i], size, channels, max_pixels) for i, data in enumerate(uploads)])
    labels = given_classes.labels_to_score(engine, model, images, label)
    logits = engine.score(model.stored, images, labels)
    names = model.stored.manifest.class_names or []
    return Scores(logits, 1 / (1 + np.exp(-logits.astype(np.float64))),
                  [names[i] for i in labels] if labels is not None else None)
