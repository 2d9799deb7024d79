"""/score: the discriminator's judgement of uploaded pictures (the version's `discriminator.pt`)."""
from __future__ import annotations

import anyio
from fastapi import APIRouter, File, Form, HTTPException, UploadFile

from service.api.ceilings import IMAGES_CEILING
from service.api.deps import ServicesDep, resolve_model
from service.api.error_responses import error_responses
from service.api.schemas import Score, ScoreList, VersionSpec
from service.operations import given_classes
from service.operations.rejections import Refused
from service.operations.scoring import score_uploads
from shared.store import NAME_PATTERN, NotFound

router = APIRouter(tags=["discriminator"])


@router.post("/score", response_model=ScoreList, response_model_exclude_none=True,
             responses=error_responses(400, 404, 413, 422, 503),
             summary="The discriminator's logit and probability for uploaded images")
async def score(services: ServicesDep,
                files: list[UploadFile] = File(description="PNG, JPEG or any picture, any size", min_length=1,
                                               max_length=IMAGES_CEILING),
                model: str = Form(pattern=NAME_PATTERN, description="model name in the store", examples=["dcgan"]),
                version: VersionSpec = Form("latest", description='"latest" or a version number'),
                class_: str | None = Form(None, alias="class", min_length=1, max_length=64,
                                          description="a class-conditional version only: the images' class (a name "
                                                      "or an index); left out, each image's class as the version's "
                                                      "classifier sees it")) -> ScoreList:
    """Each image is converted to the model's size and channels (bilinear resize, grayscale for these models),
    as the trainer reads a folder of images, and scored by the version's discriminator: `logit` is its raw
    output, `probability` its sigmoid (how real it finds the image). A class-conditional version's discriminator
    judges each image as being of its class."""
    loaded = await resolve_model(services.registry, model, version)
    if len(files) > services.settings.max_images:
        raise Refused(["files"], f"{len(files)} files; the most in one request is {services.settings.max_images} "
                                     "(MAX_IMAGES)", "too_long")
    label = given_classes.form_class(loaded, class_)
    uploads = [await f.read() for f in files]
    try:
        found = await anyio.to_thread.run_sync(score_uploads, services.engine, loaded, uploads, label,
                                               services.settings.max_pixels, limiter=services.inference)
    except NotFound as e:
        raise HTTPException(404, detail=str(e)) from None
    return ScoreList(model=loaded.name, version=loaded.version, image_shape=list(loaded.image_shape), scores=[
        Score(filename=f.filename or f"file {i}", logit=float(found.logits[i]),
              probability=float(found.probabilities[i]), class_=found.classes[i] if found.classes else None)
        for i, f in enumerate(files)])
