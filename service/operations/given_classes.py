"""The classes a class-conditional version is given: exact by construction, no candidates and no classifier.

Its generator takes z then one weight per class (its `LatentLayout`; the names in `manifest.class_names`). A
request names a class and the label goes straight in: the same cost as any request. Without a class, each latent
a seed draws has its class from the seed too (`LatentLayout.seeded`), so every route that takes seeds works
unchanged; truncation pulls only z towards the mean, never the class weights.
"""
from __future__ import annotations

import torch

from service.engine.registry import LoadedModel
from service.operations.rejections import MODEL_MISMATCH, field_error
from shared.imaging.latents import seeded_latents


def label_of(model: LoadedModel, ref: str | int, loc: list) -> tuple[int, str]:
    """(index, name) of a class of a conditional version, by name (any case) or index; a 422 naming them if none."""
    manifest = model.stored.manifest
    try:
        index = manifest.class_index(ref)
    except LookupError as e:
        raise field_error(loc, str(e), MODEL_MISMATCH) from None
    return index, manifest.class_names[index]


def of_class(model: LoadedModel, label: int, seed: int, count: int, psi: float | None = None) -> torch.Tensor:
    """`count` latents of the class: the seed's z (as an unconditional model's, truncated by `psi`), the label's
    one-hot after each."""
    layout = model.layout
    return layout.truncated(layout.labelled(seeded_latents(seed, count, layout.style), label), psi)


def form_class(model: LoadedModel, ref: str | None) -> int | None:
    """The index of a form's `class` (a name, or an index as text); a 422 on a version that is not conditional, or
    for a class it does not have."""
    if ref is None:
        return None
    if not model.layout.conditional:
        raise field_error(["class"], f"{model.name} v{model.version} is not class-conditional: it takes no class; "
                                     "leave `class` out", MODEL_MISMATCH)
    return label_of(model, ref, ["class"])[0]
