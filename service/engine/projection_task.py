"""A projection as a task of the inference thread: the encoder's guess (or the mean latent), then the search
of `shared.imaging.projection`, one step at a time, so that the batched forwards of other requests run
between its steps; then the reconstruction. It runs alone, on the device of the version's generator, so the
same picture and seed give the same answer whatever else the service is doing."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import torch

from shared.imaging.grids import to_uint8
from shared.imaging.latents import LatentLayout
from shared.imaging.pixels import to_model_range
from shared.imaging.precision import FP32
from shared.imaging.projection import Projection, WithClass, mean_latent, picture_classes


@dataclass(frozen=True)
class Projected:
    latent: torch.Tensor  # (latent_dim,) on the CPU
    reconstruction: torch.Tensor  # uint8 (C, H, W): the generator's image of the latent
    losses: dict[str, dict[str, float]]  # "start" (the first guess) and "final": pixel, features, total
    steps: int
    start: str  # where the search started: "encoder" or "mean latent"
    seconds: float
    label: int | None = None  # a conditional version's class, held during the search


def projection_steps(generator: torch.nn.Module, encoder: torch.nn.Module | None,
                     classifier: torch.nn.Module | None, image: torch.Tensor, layout: LatentLayout, steps: int,
                     seed: int, device: torch.device, precision: str = FP32,
                     label: int | None = None) -> Iterator[None]:
    """The task: yields after each step; returns a `Projected`. `image`: uint8 (C, H, W) at the model's size;
    the generator runs in `precision`, the one its version is served in. A conditional generator is searched in
    z with the class held at `label` (None: `picture_classes`)."""
    started = time.perf_counter()
    target = to_model_range(image.unsqueeze(0).to(device))
    with torch.inference_mode():
        guess = encoder(target) if encoder is not None else mean_latent(1, layout.width, device)
        if layout.conditional:  # z alone is searched, the class held
            label = int(picture_classes(classifier, target, guess, layout.classes)[0]) if label is None else label
            generator = WithClass(generator, torch.tensor([label], device=device), layout.classes)
    yield
    search = Projection(generator, target, layout.style_of(guess).clone(), steps, seed,
                        classifier.features if classifier is not None else None, precision)
    yield
    while search.done < steps:
        search.step()
        yield
    latent = search.latents.detach()
    with torch.inference_mode():
        reconstruction = to_uint8(search.generate(latent))[0].cpu()
    return Projected(layout.labelled(latent, label)[0].cpu(), reconstruction,
                     {"start": search.start_losses.of(0), "final": search.losses().of(0)},
                     steps, "encoder" if encoder is not None else "mean latent", time.perf_counter() - started, label)
