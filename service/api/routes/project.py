"""/project: where a picture lives in latent space (stylegan2-ada's projector, as a service)."""
from __future__ import annotations

from typing import Literal

import torch
from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from service.api.ceilings import PROJECT_STEPS_CEILING, SCALE_CEILING
from service.api.deps import ServicesDep, resolve_model
from service.api.error_responses import error_responses
from service.api.image_responses import CLIENT_CLOSED_REQUEST, client_gone, png_response
from service.api.schemas import MAX_SEED, ProjectionResult, StageLosses, VersionSpec
from service.operations.generation import ClientGone
from service.operations.projection import project_upload
from service.operations.rejections import LIMIT_EXCEEDED, Refused
from shared.store import NAME_PATTERN

router = APIRouter(tags=["projection"])

RESPONSES = {
    200: {"content": {"application/json": {}, "image/png": {}},
          "description": "the latent found, its losses, steps and time (JSON); or with format=png, the picture as "
                         "fed to the model beside the generator's reconstruction"},
    **error_responses(400, 404, 413, 422, 503),
}


@router.post("/project", response_model=ProjectionResult, response_model_exclude_none=True, responses=RESPONSES,
             summary="Find the latent of an uploaded picture")
async def project(request: Request, services: ServicesDep,
                  file: UploadFile = File(description="the picture: PNG, JPEG or any, any size (made the model's size "
                                                      "and channels as the trainer reads a folder of images)"),
                  model: str = Form(pattern=NAME_PATTERN, description="model name in the store", examples=["dcgan"]),
                  version: VersionSpec = Form("latest", description='"latest" or a version number'),
                  steps: int = Form(100, ge=0, le=PROJECT_STEPS_CEILING,
                                    description="optimisation steps after the encoder's guess (0: the guess alone; at "
                                                "most MAX_PROJECT_STEPS)"),
                  seed: int = Form(0, ge=0, le=MAX_SEED, description="seed of the search's noise: the same picture and "
                                                                     "seed give the same answer"),
                  format: Literal["json", "png"] = Form("json", description="json: the latent and the losses; png: the "
                                                                            "picture beside its reconstruction"),
                  scale: int = Form(1, ge=1, le=SCALE_CEILING, description="enlargement of the png"),
                  class_: str | None = Form(None, alias="class", min_length=1, max_length=64,
                                            description="a class-conditional version only: the picture's class (a "
                                                        "name or an index), held while z is searched; left out, the "
                                                        "class the version's classifier sees in the picture")):
    """The version's encoder guesses the picture's latent (a version without one starts from the mean latent),
    then `steps` steps of Adam on the latent bring the generator's image of it closer to the picture: in pixels
    and in the features of the version's classifier. It runs on the service's device between the batches of
    other requests, so they do not wait behind it. Post the latent back as `latent` to `/generate` or `/sweep`.
    On a class-conditional version only z is searched, the class held: the answer gives both."""
    loaded = await resolve_model(services.registry, model, version)
    if steps > services.settings.max_project_steps:
        raise Refused(["steps"], f"{steps} steps; the most is {services.settings.max_project_steps} "
                                     "(MAX_PROJECT_STEPS)", LIMIT_EXCEEDED)
    if format == "png":
        services.limits.check_grid(2, loaded.image_shape[1:], 2, 2, scale, ["scale"])
    try:
        projection = await project_upload(services.engine, loaded, await file.read(), class_, steps, seed,
                                          services.settings.max_pixels, client_gone(request))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    found = projection.found
    if format == "png":
        return await png_response(services, loaded, torch.stack([projection.picture, found.reconstruction]), 2, 2,
                                  scale)
    return ProjectionResult(model=loaded.name, version=loaded.version, latent=found.latent.tolist(), start=found.start,
                            steps=found.steps, seconds=round(found.seconds, 3),
                            losses={k: StageLosses(**v) for k, v in found.losses.items()},
                            class_=None if found.label is None else loaded.stored.manifest.class_names[found.label])
