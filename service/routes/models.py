"""/models: what the store holds, what is loaded, each version's manifest, its semantic directions."""
from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException, Path, Query

from service.deps import RegistryDep, directions_of, resolve_model
from service.engine.registry import ModelRegistry
from service.errors import error_responses
from service.schemas import DirectionList, ModelInfo, ModelList, ModelVersion
from shared.store import NAME_PATTERN

router = APIRouter(tags=["models"])


def describe(registry: ModelRegistry, name: str) -> ModelInfo | None:
    """The store's versions of `name` and what of it is in memory; None if it has no complete version."""
    versions = registry.versions(name)
    if not versions:
        return None
    serving = registry.serving().get(name)
    return ModelInfo(
        name=name,
        latest=versions[-1].version,
        serving=serving.version if serving else None,
        loaded=registry.loaded_versions().get(name, []),
        versions=[ModelVersion(version=v.version, latest=v is versions[-1], manifest=v.manifest) for v in versions],
    )


@router.get("/models", response_model=ModelList, summary="Every model in the store, its versions and manifests")
async def list_models(registry: RegistryDep) -> ModelList:
    def collect() -> ModelList:
        found = (describe(registry, name) for name in registry.model_names())
        return ModelList(models=[m for m in found if m is not None])

    return await anyio.to_thread.run_sync(collect)


ModelNamePath = Path(pattern=NAME_PATTERN, examples=["dcgan"])


@router.get("/models/{name}", response_model=ModelInfo,
            summary="One model: its versions, which is latest, each manifest",
            responses={404: {"description": "no complete version of that model"}})
async def get_model(registry: RegistryDep, name: str = ModelNamePath) -> ModelInfo:
    found = await anyio.to_thread.run_sync(describe, registry, name)
    if found is None:
        raise HTTPException(404, detail=f"no model named {name!r} with a complete version in the store")
    return found


@router.get("/models/{name}/directions", response_model=DirectionList, responses=error_responses(404, 422, 503),
            summary="Semantic directions of a version (SeFa), strongest first")
async def get_directions(registry: RegistryDep, name: str = ModelNamePath,
                         version: str = Query("latest", pattern=r"^(latest|[1-9][0-9]{0,8})$",
                                              description='"latest" or a version number'),
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
