"""A class-conditional version's classes: exact by construction, no candidates and no classifier.

Its generator takes z (`style_dim` numbers) then one weight per class (`manifest.class_names`), a one-hot for one
class. A request names a class and the label goes straight in: the same cost as any request. Without a class,
each latent a seed draws has its class from the seed too (`seeded_latents`), so every route that takes seeds
works unchanged; truncation pulls only z towards the mean, never the class weights.
"""
from __future__ import annotations

import torch

from service.engine.registry import LoadedModel
from service.operations.found_classes import truncate
from service.operations.rejections import MODEL_MISMATCH, field_error
from shared.imaging.latents import seeded_latents, with_classes


def is_conditional(model: LoadedModel) -> bool:
    return model.stored.manifest.input_classes > 0


def class_count(model: LoadedModel) -> int:
    """The class weights at the end of the model's latents (0: unconditional)."""
    return model.stored.manifest.input_classes


def style_dim(model: LoadedModel) -> int:
    return model.latent_dim - class_count(model)


def label_of(model: LoadedModel, ref: str | int, loc: list) -> tuple[int, str]:
    """(index, name) of a class of a conditional version, by name (any case) or index; a 422 naming them if none."""
    manifest = model.stored.manifest
    try:
        index = manifest.class_index(ref)
    except LookupError as e:
        raise field_error(loc, str(e), MODEL_MISMATCH) from None
    return index, manifest.class_names[index]


def seeded(model: LoadedModel, seed: int, count: int) -> torch.Tensor:
    """The model's `count` latents of `seed` (a conditional model's with their classes, drawn from the seed)."""
    return seeded_latents(seed, count, model.latent_dim, class_count(model))


def truncated(model: LoadedModel, latents: torch.Tensor, psi: float | None) -> torch.Tensor:
    """`truncate` on the style only: a conditional latent's class weights stay as they are."""
    k = class_count(model)
    if not k or psi is None or psi == 1:
        return truncate(latents, psi)
    return torch.cat([truncate(latents[:, :-k], psi), latents[:, -k:]], 1)


def of_class(model: LoadedModel, label: int, seed: int, count: int, psi: float | None = None) -> torch.Tensor:
    """`count` latents of the class: the seed's z (as an unconditional model's, truncated by `psi`), the label's
    one-hot after each."""
    z = truncate(seeded_latents(seed, count, style_dim(model)), psi)
    return with_classes(z, label, class_count(model))


def relabelled(model: LoadedModel, latents: torch.Tensor, label: int) -> torch.Tensor:
    """The same styles, all of class `label`."""
    return with_classes(latents[:, :style_dim(model)], label, class_count(model))


def form_class(model: LoadedModel, ref: str | None) -> int | None:
    """The index of a form's `class` (a name, or an index as text); a 422 on a version that is not conditional, or
    for a class it does not have."""
    if ref is None:
        return None
    if not is_conditional(model):
        raise field_error(["class"], f"{model.name} v{model.version} is not class-conditional: it takes no class; "
                                     "leave `class` out", MODEL_MISMATCH)
    return label_of(model, ref, ["class"])[0]
