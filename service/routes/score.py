"""/score: the discriminator's judgement of uploaded pictures (the version's `discriminator.pt`)."""
from __future__ import annotations

import io

import anyio
import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from PIL import Image, UnidentifiedImageError

from service.deps import ServicesDep, resolve_model
from service.errors import error_responses
from service.limits import IMAGES_CEILING, INVALID_IMAGE, LIMIT_EXCEEDED, field_error
from service.schemas import Score, ScoreList, VersionSpec
from shared.imaging.pixels import fit_image
from shared.store import NAME_PATTERN, NotFound

router = APIRouter(tags=["discriminator"])


def decode(upload: bytes, i: int, size: int, channels: int, max_pixels: int) -> np.ndarray:
    """One upload as uint8 (size, size, channels), converted as the trainer converts a folder of images."""
    try:
        with Image.open(io.BytesIO(upload)) as image:  # reads the header only: the size is known before decoding
            if image.width * image.height > max_pixels:
                raise field_error(["files", i], f"{image.width}x{image.height} pixels is more than MAX_PIXELS "
                                                f"({max_pixels})", LIMIT_EXCEEDED)
            return fit_image(image, size, channels)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise field_error(["files", i], f"not an image this service can read (PNG, JPEG, ...): {e}",
                          INVALID_IMAGE) from None


@router.post("/score", response_model=ScoreList, responses=error_responses(400, 404, 413, 422, 503),
             summary="The discriminator's logit and probability for uploaded images")
async def score(services: ServicesDep,
                files: list[UploadFile] = File(description="PNG, JPEG or any picture, any size", min_length=1,
                                               max_length=IMAGES_CEILING),
                model: str = Form(pattern=NAME_PATTERN, description="model name in the store", examples=["dcgan"]),
                version: VersionSpec = Form("latest", description='"latest" or a version number')) -> ScoreList:
    """Each image is converted to the model's size and channels (bilinear resize, grayscale for these models),
    as the trainer reads a folder of images, and scored by the version's discriminator: `logit` is its raw
    output, `probability` its sigmoid (how real it finds the image)."""
    loaded = await resolve_model(services.registry, model, version)
    if len(files) > services.settings.max_images:
        raise field_error(["files"], f"{len(files)} files; the most in one request is {services.settings.max_images} "
                                     "(MAX_IMAGES)", "too_long")
    channels, size = loaded.image_shape[0], loaded.image_shape[1]
    uploads = [await f.read() for f in files]

    def run() -> np.ndarray:
        images = np.stack([decode(data, i, size, channels, services.settings.max_pixels) for i, data in enumerate(uploads)])
        return services.engine.score(loaded.stored, images)

    try:
        logits = await anyio.to_thread.run_sync(run, limiter=services.inference)
    except NotFound as e:
        raise HTTPException(404, detail=str(e)) from None
    probabilities = 1 / (1 + np.exp(-logits.astype(np.float64)))
    return ScoreList(model=loaded.name, version=loaded.version, image_shape=list(loaded.image_shape), scores=[
        Score(filename=f.filename or f"file {i}", logit=float(lg), probability=float(p))
        for i, (f, lg, p) in enumerate(zip(files, logits, probabilities))])
