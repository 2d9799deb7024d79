"""The classes a class-conditional version is given: exact by construction, no candidates and no classifier.

Its generator takes z then one weight per class (its `LatentLayout`; the names in `manifest.class_names`). A
request names a class and the label goes straight in: the same cost as any request. Without a class, each latent
a seed draws has its class from the seed too (`LatentLayout.seeded`), so every route that takes seeds works
unchanged; truncation pulls only z towards the mean, never the class weights.
"""
from __future__ import annotations

import numpy as np
import torch

from service.engine.engine import Engine
from service.engine.registry import LoadedModel
from service.operations.rejections import MODEL_MISMATCH, Refused


def label_of(model: LoadedModel, ref: str | int, loc: list) -> tuple[int, str]:
    """(index, name) of a class of a conditional version, by name (any case) or index; a 422 naming them if none."""
    manifest = model.stored.manifest
    try:
        index = manifest.class_index(ref)
    except LookupError as e:
        raise Refused(loc, str(e), MODEL_MISMATCH) from None
    return index, manifest.class_names[index]


def form_class(model: LoadedModel, ref: str | None) -> int | None:
    """The index of a form's `class` (a name, or an index as text); a 422 on a version that is not conditional, or
    for a class it does not have."""
    if ref is None:
        return None
    if not model.layout.conditional:
        raise Refused(["class"], f"{model.name} v{model.version} is not class-conditional: it takes no class; "
                                     "leave `class` out", MODEL_MISMATCH)
    return label_of(model, ref, ["class"])[0]


def projection_label(model: LoadedModel, ref: str | None) -> int | None:
    """The class a projection holds (a conditional version's search is over z only): the one given, else None (the
    engine finds it with the version's classifier or encoder); Refused when the version has neither."""
    label = form_class(model, ref)
    if model.layout.conditional and label is None and model.classifier is None and model.started.encoder is None:
        raise Refused(["class"], f"{model.name} v{model.version} has neither a classifier nor an encoder to find "
                                 "the picture's class: give `class`", MODEL_MISMATCH)
    return label


def labels_to_score(engine: Engine, model: LoadedModel, images: np.ndarray, label: int | None) -> np.ndarray | None:
    """The classes a conditional version's D judges uint8 (N, H, W, C) `images` with: the one given, else each
    image's class as the version's classifier sees it (Refused, asking for `class`, without one); None for an
    unconditional version, whose D takes no class."""
    if not model.layout.conditional:
        return None
    if label is not None:
        return np.full(len(images), label)
    if model.classifier is None:
        raise Refused(["class"], f"{model.name} v{model.version} has no classifier to find the images' class: "
                                 "give `class`", MODEL_MISMATCH)
    probs = engine.classify(model.classifier, torch.from_numpy(images).permute(0, 3, 1, 2))
    return probs.argmax(1).numpy()
