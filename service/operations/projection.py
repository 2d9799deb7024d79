"""Where an uploaded picture lives in a version's latent space: the picture made the version's size and channels,
then the engine's projection (the encoder's guess, refined by Adam on the latent) between the batches of other
requests. A conditional version's search is over z, its class held: the one given, else the picture's own."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from service.engine.engine import Engine
from service.engine.projection_task import Projected
from service.engine.registry import LoadedModel
from service.operations import given_classes
from service.operations.generation import Gone, task_result
from service.operations.uploads import decode


@dataclass(frozen=True)
class Projection:
    picture: torch.Tensor  # uint8 (C, H, W): the upload as fed to the model
    found: Projected


async def project_upload(engine: Engine, model: LoadedModel, upload: bytes, class_ref: str | None, steps: int,
                         seed: int, max_pixels: int, gone: Gone) -> Projection:
    """The upload's latent after `steps` steps from `seed`. Refused for a class the version does not take (or cannot
    find), or an upload that is not a picture; Overloaded when MAX_PROJECTIONS are in progress; ClientGone (the
    search stopped between its steps) if the client goes first."""
    label = given_classes.projection_label(model, class_ref)
    channels, size = model.image_shape[0], model.image_shape[1]
    picture = torch.from_numpy(decode(upload, ["file"], size, channels, max_pixels).transpose(2, 0, 1).copy())
    task = engine.project(model.started, model.layout, picture, steps, seed, label)
    return Projection(picture, await task_result(engine.worker, task, gone))
