"""What routes receive (FastAPI dependencies): the settings, the registry, telemetry, the limits, and
the model a request names. Everything is built once by `create_app` and kept on `app.state`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request

from service.api.auth import ApiKeys
from service.api.drain import Drain
from service.api.limits import RequestLimits
from service.api.settings import Settings
from service.api.telemetry import Telemetry
from service.engine.engine import Engine
from service.engine.registry import LoadedModel, ModelRegistry
from shared.store import NotFound


@dataclass(frozen=True)
class Services:
    """The app's long-lived parts, one per app instance."""

    settings: Settings
    registry: ModelRegistry
    engine: Engine
    telemetry: Telemetry
    limits: RequestLimits
    inference: anyio.CapacityLimiter  # requests computing at once (INFERENCE_THREADS)
    api_keys: ApiKeys
    drain: Drain  # set on SIGTERM: not ready, new image requests refused


# `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per call
async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.services.registry


async def get_telemetry(request: Request) -> Telemetry:
    return request.app.state.services.telemetry


ServicesDep = Annotated[Services, Depends(get_services)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]


def not_ready_detail(registry: ModelRegistry) -> str:
    """Why nothing can be served yet, and what to do about it."""
    if registry.last_refresh is None:
        return "starting: the model store has not been read yet"
    if registry.last_error:
        return f"no model could be loaded: {registry.last_error}"
    if damaged := registry.damaged():
        return (f"no model loaded: {registry.store_root} holds only damaged versions ("
                + "; ".join(f"{d.name} v{d.version}: {d.reason}" for d in damaged[:3])
                + "): restore the files from a copy or publish again (`python -m shared verify` lists them)")
    return (f"no model loaded yet: {registry.store_root} has no complete version; "
            "publish one with `python -m trainer` (it is picked up without a restart)")


async def resolve_model(registry: ModelRegistry, name: str, version: int | str) -> LoadedModel:
    """The loaded model a request names: 503 before any model is ready, 404 for what the store lacks."""
    if not registry.ready:
        raise HTTPException(503, detail=not_ready_detail(registry))
    found = registry.loaded(name, version)  # the usual case: no thread hop
    if found is not None:
        return found
    try:
        return await anyio.to_thread.run_sync(registry.get, name, version)  # may load a pinned version
    except NotFound as e:
        raise HTTPException(404, detail=str(e)) from None

