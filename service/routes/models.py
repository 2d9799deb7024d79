"""/models: what the store holds, what is loaded, each version's manifest."""
from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException, Path

from service.deps import RegistryDep
from service.schemas import ModelInfo, ModelList
from shared.store import NAME_PATTERN

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelList, summary="Every model in the store, its versions and manifests")
async def list_models(registry: RegistryDep) -> ModelList:
    def collect() -> ModelList:
        found = (registry.describe(name) for name in registry.model_names())
        return ModelList(models=[m for m in found if m is not None])

    return await anyio.to_thread.run_sync(collect)


@router.get("/models/{name}", response_model=ModelInfo,
            summary="One model: its versions, which is latest, each manifest",
            responses={404: {"description": "no complete version of that model"}})
async def get_model(registry: RegistryDep, name: str = Path(pattern=NAME_PATTERN, examples=["dcgan"])) -> ModelInfo:
    found = await anyio.to_thread.run_sync(registry.describe, name)
    if found is None:
        raise HTTPException(404, detail=f"no model named {name!r} with a complete version in the store")
    return found
