"""/latents: the latent vectors behind a seed, so that a client can edit one and post it back."""
from __future__ import annotations

from fastapi import APIRouter, Query

from service.api.ceilings import IMAGES_CEILING
from service.api.schemas import MAX_SEED, SeededLatent
from service.operations.rejections import LIMIT_EXCEEDED, Refused
from shared.imaging.latents import seeded_latents

router = APIRouter(tags=["latents"])
MAX_LATENT_DIM = 4096


@router.get("/latents", response_model=SeededLatent, summary="The index-th latent a seed draws")
async def seeded_latent(seed: int = Query(ge=0, le=MAX_SEED, examples=[0]),
                        index: int = Query(0, ge=0, le=IMAGES_CEILING - 1, description="image index in the seed's grid"),
                        dim: int = Query(100, ge=1, le=MAX_LATENT_DIM, description="the model's latent_dim"),
                        classes: int = Query(0, ge=0, le=MAX_LATENT_DIM - 1,
                                             description="a class-conditional model's number of classes (its "
                                                         "manifest's class_names): the latent ends in a one-hot")
                        ) -> SeededLatent:
    """The latent that image `index` of `POST /generate` with this `seed` was made from: the same numbers on
    every machine (NumPy PCG64). Edit it and post it back as `latent`."""
    if classes >= dim:
        raise Refused(["classes"], f"classes ({classes}) must be fewer than dim ({dim}): a latent is z, then "
                                       "one weight per class", LIMIT_EXCEEDED, "query")
    return SeededLatent(seed=seed, index=index, latent=seeded_latents(seed, index + 1, dim, classes)[index].tolist())
