"""The FastAPI application: lifespan (store polling), middleware, offline docs, routes."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

import anyio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi

from service.api.auth import ApiKeys, is_loopback, read_keys
from service.api.deps import Services
from service.api.drain import Drain, RefuseWhileDraining
from service.api.error_responses import not_found, overloaded, refused, validation_error
from service.api.lane import LeanRoutes, lean_table
from service.api.limits import RequestLimits, tighten_schema
from service.api.middleware import BodySizeLimit, RequestMetrics
from service.api.pages import add_pages
from service.api.routes import api_router, images, inference
from service.api.settings import Settings
from service.api.telemetry import Telemetry
from service.engine.batcher import Overloaded
from service.engine.engine import Engine, EngineConfig
from service.engine.registry import ModelRegistry
from service.operations.rejections import Refused
from shared.imaging.devices import resolve_device
from shared.store import NotFound, Store

log = logging.getLogger("latentlab.service")

DESCRIPTION = """
Serves the GANs that `python -m trainer` publishes to the model store: PNG grids from latent
vectors (`POST /generate`) and the seed study's latent-coordinate sweeps (`POST /sweep`).
New versions are picked up without a restart; `GET /models` lists what there is.
"""


async def poll_store(registry: ModelRegistry, interval: float) -> None:
    """Look for new versions every `interval` seconds, off the event loop; never dies on an error."""
    held = None
    while True:
        try:
            await anyio.to_thread.run_sync(registry.refresh)
        except Exception:  # keep polling whatever happened: the next look may succeed
            log.exception("reading the model store failed")
        if (now := registry.loaded_versions()) != held:
            held = now
            # torch, FastAPI and the loaded models are hundreds of thousands of long-lived objects: left
            # to the cyclic collector, each full pass over them stalls a request by 50-150 ms on a small
            # CPU. Frozen, they are never scanned; refcounting still frees what is dropped.
            gc.freeze()
        await asyncio.sleep(interval)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(max_batch_latents=settings.max_batch_latents, max_batch_wait_ms=settings.max_batch_wait_ms,
                        max_queued_latents=settings.max_queued_latents, max_queue_delay_ms=settings.max_queue_delay_ms,
                        cuda_graphs=settings.cuda_graphs, precision=settings.precision, runtime=settings.runtime,
                        warmup_batch=settings.warmup_batch, discriminators_kept=settings.pinned_cache_size + 1,
                        max_projections=settings.max_projections)


def create_app(settings: Settings | None = None, lean_routes: bool = True) -> FastAPI:
    """The service. `lean_routes=False` leaves the image routes to FastAPI alone, the reference the lean
    path must match (tests compare the two)."""
    settings = settings or Settings()
    device = resolve_device(settings.device)  # ValueError with the fix when CUDA is asked for and absent
    api_keys = ApiKeys(read_keys(settings.api_keys.get_secret_value(), settings.api_keys_file))
    telemetry = Telemetry()
    engine = Engine(engine_config(settings), device, telemetry)
    registry = ModelRegistry(Store(settings.model_dir), device, engine, telemetry, settings.pinned_cache_size)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("serving %s on %s (%s)", settings.model_dir, device,
                 "API keys required" if api_keys.enabled else "no API keys: open to anyone who can connect")
        if not api_keys.enabled and not is_loopback(settings.host):
            log.warning("no API keys are set and the service listens on %s: anyone who can reach the port can use "
                        "it. Set API_KEYS or API_KEYS_FILE (docs/serving.md: Security)", settings.host)
        engine.resume()
        poller = asyncio.create_task(poll_store(registry, settings.reload_interval))
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            engine.stop()

    # operation ids are the routes' names (generate, sweep, list_models...): the method names of generated clients
    app = FastAPI(title="latentlab", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, generate_unique_id_function=lambda route: route.name)
    drain = Drain(settings.drain_notice_s)  # begun by SIGTERM (service.api.drain.DrainingServer)
    app.state.services = Services(settings, registry, engine, telemetry, RequestLimits(settings),
                                  anyio.CapacityLimiter(settings.inference_threads), api_keys, drain)
    app.include_router(api_router(keys_required=api_keys.enabled, metrics_public=settings.metrics_public))

    add_pages(app)

    def openapi() -> dict:
        if app.openapi_schema is None:  # FastAPI's, with the ceilings lowered to this service's settings
            app.openapi_schema = tighten_schema(get_openapi(title=app.title, version=app.version, routes=app.routes,
                                                            description=app.description), settings)
        return app.openapi_schema

    app.openapi = openapi
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Refused, refused)  # the operations' own errors, in FastAPI's shapes
    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(NotFound, not_found)
    if lean_routes:  # added first, so innermost: the body limit and the metrics apply to it too
        app.add_middleware(LeanRoutes, routes=lean_table([*images.router.routes, *inference.router.routes],
                                                         {**images.LEAN, **inference.LEAN}, inference.PATH_PATTERNS),
                           keys_required=api_keys.enabled)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RefuseWhileDraining, drain=drain)  # before reading a body: a draining replica takes none
    app.add_middleware(RequestMetrics, telemetry=telemetry)  # added last, runs first: it also counts the 413s and 503s
    return app
