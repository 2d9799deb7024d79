"""What a version's latent space means, for requests: classes by name, truncation, and class candidates.

A class request (`"class": "Trouser"`) draws latents from its seed in a fixed order, keeps those the
latent softmax of `classes.json` puts in the class (cheap: no forward), generates them through the engine
and keeps those the version's classifier agrees are of the class: images of the class, as the project's
classifier judges them, diverse because they come from everywhere in the class's region, and the same for
the same request. Truncation (`"truncation": psi`) pulls latents towards the mean latent (the prior's, 0,
or the class's mean when a class is asked for), trading variety for typical images, as in StyleGAN.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from service.engine.registry import LoadedModel
from service.operations.rejections import MODEL_MISMATCH, Refused
from shared.imaging.latents import LatentLayout
from shared.store import ClassBoundary, ClassSemantics

BLOCK = 512  # candidates drawn from the seed at a time
MAX_CANDIDATES = 200  # a class request looks at most this many candidates per image asked for


def semantics_of(model: LoadedModel, loc: list) -> ClassSemantics:
    """The version's classes; Refused, saying why, when it has none."""
    if model.semantics is not None and model.classifier is not None:
        return model.semantics
    why = (f"{model.name} v{model.version} knows no classes: it was trained on "
           f"{model.stored.manifest.dataset or 'data'} without labels the project can recognise, or made before "
           f"classes were found (add them with `python -m trainer.evaluate --model {model.name}`)")
    raise Refused(loc, why, MODEL_MISMATCH)


def find_class(semantics: ClassSemantics, ref: str | int, loc: list) -> ClassBoundary:
    found = semantics.find(ref)
    if found is None:
        names = ", ".join(f"{c.index} {c.name!r}" for c in semantics.classes)
        raise Refused(loc, f"no class {ref!r}; the classes are {names}", MODEL_MISMATCH)
    return found


def _stream(semantics: ClassSemantics, cls: ClassBoundary, seed: int, psi: float | None,
            limit: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Blocks of the seed's latents (truncated towards the class's mean), `limit` in all, with the latent
    softmax's logits for each. The same blocks every time."""
    rng = np.random.default_rng(seed)
    weights = torch.tensor(semantics.latent_classifier.weights)
    bias = torch.tensor(semantics.latent_classifier.bias)
    center = torch.tensor(cls.mean)
    drawn = 0
    while drawn < limit:
        block = torch.from_numpy(rng.standard_normal((min(BLOCK, limit - drawn), semantics.latent_dim),
                                                     dtype=np.float32))
        drawn += len(block)
        block = LatentLayout(semantics.latent_dim).truncated(block, psi, center)  # a found class: no class input
        yield block, block @ weights.T + bias


def class_candidates(semantics: ClassSemantics, cls: ClassBoundary, seed: int, psi: float | None,
                     limit: int) -> Iterator[torch.Tensor]:
    """Blocks of the seed's latents that the latent softmax puts in the class, in the seed's order, until
    `limit` latents have been looked at."""
    for block, logits in _stream(semantics, cls, seed, psi, limit):
        yield block[logits.argmax(1) == cls.index]


def likeliest_others(semantics: ClassSemantics, cls: ClassBoundary, seed: int, psi: float | None, limit: int,
                     n: int) -> torch.Tensor:
    """For a class the model rarely makes: the `n` latents of the same stream that the latent softmax puts in
    another class but finds likeliest for this one (the seed's order breaks ties)."""
    scores, latents = [], []
    for block, logits in _stream(semantics, cls, seed, psi, limit):
        others = logits.argmax(1) != cls.index
        scores.append(logits.log_softmax(1)[others, cls.index])
        latents.append(block[others])
    order = torch.sort(torch.cat(scores), descending=True, stable=True).indices[:n]  # stable: ties in seed order
    return torch.cat(latents)[order]
