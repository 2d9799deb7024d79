"""/models: what the store holds, what is loaded, each version's manifest, its semantic directions."""
from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException, Path, Query, Request

from service.api.ceilings import IMAGES_CEILING
from service.api.deps import RegistryDep, ServicesDep, resolve_model
from service.api.error_responses import error_responses
from service.api.image_responses import client_gone
from service.api.schemas import (
    MAX_SEED,
    ClassInfo,
    ClassLatents,
    ClassList,
    DirectionList,
    ModelInfo,
    ModelList,
    TrainingHistory,
)
from service.operations.catalogue import catalogue, training_history
from service.operations.found_classes import semantics_of
from service.operations.generation import Source, class_latents
from service.operations.rejections import Refused
from service.operations.sweeps import directions_of
from shared.store import NAME_PATTERN

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelList, summary="Every model in the store, its versions and manifests")
async def list_models(registry: RegistryDep) -> ModelList:
    def collect() -> ModelList:
        found = (catalogue(registry, name) for name in registry.model_names())
        return ModelList(models=[ModelInfo.model_validate(c, from_attributes=True) for c in found if c is not None])

    return await anyio.to_thread.run_sync(collect)


ModelNamePath = Path(pattern=NAME_PATTERN, examples=["dcgan"])
VersionQuery = Query("latest", pattern=r"^(latest|[1-9][0-9]{0,8})$", description='"latest" or a version number')


@router.get("/models/{name}", response_model=ModelInfo,
            summary="One model: its versions, which is latest, each manifest",
            responses={404: {"description": "no complete version of that model"}})
async def get_model(registry: RegistryDep, name: str = ModelNamePath) -> ModelInfo:
    found = await anyio.to_thread.run_sync(catalogue, registry, name)
    if found is None:
        raise HTTPException(404, detail=f"no model named {name!r} in the store")
    return ModelInfo.model_validate(found, from_attributes=True)


@router.get("/models/{name}/history", response_model=TrainingHistory, responses=error_responses(404, 422),
            summary="A version's training curves: losses and D's outputs, step by step")
async def get_history(registry: RegistryDep, name: str = ModelNamePath, version: str = VersionQuery,
                      every: int = Query(1, ge=1, le=100_000, description="keep every N-th step (thins long runs)")
                      ) -> TrainingHistory:
    """The numbers behind the version's loss figure, from its `report/history.csv`: both losses and D's mean
    output on real and generated images at every training step, and what `--eval-every` measured."""
    found = await anyio.to_thread.run_sync(training_history, registry, name, version, every)
    return TrainingHistory.model_validate(found, from_attributes=True)


@router.get("/models/{name}/directions", response_model=DirectionList, responses=error_responses(404, 422, 503),
            summary="Semantic directions of a version (SeFa), strongest first")
async def get_directions(registry: RegistryDep, name: str = ModelNamePath, version: str = VersionQuery,
                         k: int = Query(10, ge=1, le=1024, description="how many directions (at most latent_dim)")
                         ) -> DirectionList:
    """The latent directions the generator's first layer stretches most (Shen & Zhou 2021, closed form:
    eigenvectors of AᵀA for the first layer's weight A), found once when the version is loaded. Move a latent
    along one with `POST /sweep` and `"directions": [i]`, or add a multiple of it yourself."""
    model = await resolve_model(registry, name, version if version == "latest" else int(version))
    found = directions_of(model)
    k = min(k, model.latent_dim)
    return DirectionList(model=model.name, version=model.version, layer=found.layer,
                         eigenvalues=found.eigenvalues[:k].tolist(), directions=found.vectors[:k].tolist())


@router.get("/models/{name}/classes", response_model=ClassList, responses=error_responses(404, 503),
            summary="The classes a version's latent space knows, with their directions")
async def get_classes(registry: RegistryDep, name: str = ModelNamePath, version: str = VersionQuery) -> ClassList:
    """The classes of the data the version was trained on (FashionMNIST's ten), as its latent space holds them:
    how common each is among its samples, how well a linear boundary separates it from the rest (held-out
    balanced accuracy), and that boundary's unit normal, the direction towards the class. Found when the
    version was made (or by `python -m trainer.evaluate`); a version trained on unlabelled images has none (404).
    Ask for images of a class with `POST /generate` and `"class"`, move towards one with `POST /sweep` and
    `"classes"`."""
    model = await resolve_model(registry, name, version if version == "latest" else int(version))
    try:
        semantics = semantics_of(model, [])
    except Refused as e:  # a version without classes: there is nothing to list
        raise HTTPException(404, detail=e.message) from None
    return ClassList(model=model.name, version=model.version, classifier=semantics.classifier,
                     samples=semantics.samples, latent_accuracy=semantics.latent_classifier.held_out_accuracy,
                     classes=[ClassInfo(index=c.index, name=c.name, share=c.share, accuracy=c.accuracy,
                                        direction=c.direction) for c in semantics.classes])


@router.get("/models/{name}/classes/{cls}/latents", response_model=ClassLatents,
            responses=error_responses(404, 422, 503), summary="The latents of a class request's images")
async def get_class_latents(request: Request, services: ServicesDep, name: str = ModelNamePath,
                            cls: str = Path(min_length=1, max_length=64, description="a class's name or index",
                                            examples=["Trouser"]),
                            version: str = VersionQuery,
                            seed: int = Query(0, ge=0, le=MAX_SEED, description="the request's seed"),
                            count: int = Query(8, ge=1, le=IMAGES_CEILING, description="how many images"),
                            truncation: float | None = Query(None, gt=0, le=1, description="as in POST /generate")
                            ) -> ClassLatents:
    """The latents behind `POST /generate` with this `class`, `seed`, `count` and `truncation`, in the grid's order
    (found the same way: the latent space's candidates, kept when the version's classifier agrees), so that a
    client can edit one and post it back as `latent`."""
    model = await resolve_model(services.registry, name, version if version == "latest" else int(version))
    source = Source(seed=seed, count=count, cls=int(cls) if cls.isdigit() else cls, truncation=truncation,
                    field=("cls",))
    services.limits.check_grid(count, model.image_shape[1:], 8, 0, 1, ["count"])
    drawn = await class_latents(model, services.engine, source, client_gone(request))
    return ClassLatents(model=model.name, version=model.version, class_=drawn.class_name, seed=seed,
                        latents=drawn.latents.tolist(), verified=drawn.verified)
