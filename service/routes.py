"""The HTTP API: /generate, /sweep, /models, /healthz, /readyz, /metrics."""
from __future__ import annotations

from typing import Any

import anyio
import torch
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.registry import LoadedModel, ModelRegistry
from service.schemas import GenerateRequest, LatentSource, SweepRequest
from service.settings import Settings
from shared.images import grid_size, png_bytes
from shared.latents import seeded_latents
from shared.sampling import sample_image, sweep_image
from shared.store import NAME_PATTERN, NotFound

router = APIRouter()

PNG_RESPONSE = {
    200: {"content": {"image/png": {}}, "description": "the PNG grid; headers X-Model and X-Model-Version "
                                                       "name the model and the resolved version"},
    404: {"description": "unknown model or version"},
    413: {"description": "request body larger than MAX_BODY_BYTES"},
    422: {"description": "invalid request; `detail` names the field"},
    503: {"description": "no model loaded yet"},
}


class AppState:
    """What the routes need, built once in the app's lifespan."""

    def __init__(self, settings: Settings, registry: ModelRegistry, metrics) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.limiter = anyio.CapacityLimiter(settings.inference_threads)


def get_state(request: Request) -> AppState:
    return request.app.state.latentlab


def field_error(loc: list[Any], message: str) -> HTTPException:
    """A 422 in FastAPI's own validation-error shape, for checks that need the model or the settings."""
    return HTTPException(422, detail=[{"type": "value_error", "loc": ["body", *loc], "msg": message}])


async def resolve_model(state: AppState, name: str, version: int | str) -> LoadedModel:
    if not state.registry.ready:
        raise HTTPException(503, detail=state.registry.not_ready_reason())
    try:
        return await anyio.to_thread.run_sync(state.registry.get, name, version)  # may load a pinned version
    except NotFound as e:
        raise HTTPException(404, detail=str(e)) from None


def resolve_latents(body: LatentSource, model: LoadedModel, max_images: int) -> torch.Tensor:
    """The request's latents as (N, latent_dim) float32, checked against the model and the limits."""
    dim = model.latent_dim
    if body.latent is not None:
        if len(body.latent) != dim:
            raise field_error(["latent"], f"{model.name} v{model.version} takes {dim} numbers, got {len(body.latent)}")
        return torch.tensor([body.latent], dtype=torch.float32)
    if body.latents is not None:
        if len(body.latents) > max_images:
            raise field_error(["latents"], f"{len(body.latents)} latents; the most in one request is {max_images}")
        for i, row in enumerate(body.latents):
            if len(row) != dim:
                raise field_error(["latents", i], f"{model.name} v{model.version} takes {dim} numbers, got {len(row)}")
        return torch.tensor(body.latents, dtype=torch.float32)
    if body.count > max_images:
        raise field_error(["count"], f"count {body.count} is more than the most images in one request, {max_images}")
    return seeded_latents(body.seed, body.count, dim)


def check_output_size(settings: Settings, model: LoadedModel, n: int, nrow: int, padding: int, scale: int,
                      loc: list[Any]) -> None:
    if n > settings.max_images:
        raise field_error(loc, f"{n} images; the most in one request is {settings.max_images}")
    if scale > settings.max_scale:
        raise field_error(["scale"], f"scale {scale} is larger than the maximum, {settings.max_scale}")
    width, height = grid_size(n, model.image_shape[1:], nrow, padding, scale)
    if width * height > settings.max_pixels:
        raise field_error(["scale"], f"the grid would be {width}x{height} pixels, more than the maximum of "
                                     f"{settings.max_pixels}; lower scale, padding or the number of images")


def png_response(png: bytes, model: LoadedModel, n: int, state: AppState) -> Response:
    state.metrics.images.labels(model.name, str(model.version)).inc(n)
    return Response(png, media_type="image/png", headers={
        "X-Model": model.name, "X-Model-Version": str(model.version), "X-Image-Count": str(n),
        "Cache-Control": "no-store",
    })


@router.post("/generate", tags=["images"], response_class=Response, responses=PNG_RESPONSE, summary="PNG grid from latent vectors")
async def generate(body: GenerateRequest, state: AppState = Depends(get_state)) -> Response:
    """Generate one image per latent and return them as a PNG grid, `nrow` per row."""
    model = await resolve_model(state, body.model, body.version)
    latents = resolve_latents(body, model, state.settings.max_images)
    n = latents.shape[0]
    check_output_size(state.settings, model, n, body.nrow, body.padding, body.scale,
                      ["latents" if body.latents is not None else "count"])
    png = await anyio.to_thread.run_sync(
        lambda: png_bytes(sample_image(model.module, latents, device=model.device, nrow=body.nrow,
                                       padding=body.padding, scale=body.scale)), limiter=state.limiter)
    return png_response(png, model, n, state)


@router.post("/sweep", tags=["images"], response_class=Response, responses=PNG_RESPONSE, summary="Latent-coordinate sweep as a PNG grid")
async def sweep(body: SweepRequest, state: AppState = Depends(get_state)) -> Response:
    """The seed's experiment: for each of `dims`, one row per value in `values` (dim-major), one column
    per base latent; each row is the base latents with that one coordinate set to (or offset by) the value."""
    model = await resolve_model(state, body.model, body.version)
    base = resolve_latents(body, model, state.settings.max_images)
    for i, d in enumerate(body.dims):
        if d >= model.latent_dim:
            raise field_error(["dims", i], f"dim {d} is out of range: {model.name} has coordinates 0..{model.latent_dim - 1}")
    n = len(body.dims) * len(body.values) * base.shape[0]
    check_output_size(state.settings, model, n, base.shape[0], body.padding, body.scale, ["dims"])
    png = await anyio.to_thread.run_sync(
        lambda: png_bytes(sweep_image(model.module, base, body.dims, body.values, mode=body.mode, labels=body.labels,
                                      device=model.device, padding=body.padding, scale=body.scale)),
        limiter=state.limiter)
    return png_response(png, model, n, state)


def describe_model(state: AppState, name: str) -> dict[str, Any] | None:
    versions = state.registry.store.versions(name)
    if not versions:
        return None
    serving = state.registry.serving().get(name)
    loaded = state.registry.loaded_versions().get(name, [])
    return {
        "name": name,
        "latest": versions[-1].version,
        "serving": serving.version if serving else None,
        "loaded": loaded,
        "versions": [{"version": v.version, "latest": v is versions[-1], "manifest": v.manifest} for v in versions],
    }


@router.get("/models", tags=["models"], summary="Every model in the store, its versions and manifests")
async def list_models(state: AppState = Depends(get_state)) -> dict[str, Any]:
    def collect():
        found = (describe_model(state, n) for n in state.registry.store.model_names())
        return {"models": [m for m in found if m is not None]}

    return await anyio.to_thread.run_sync(collect)


@router.get("/models/{name}", tags=["models"], summary="One model: its versions, which is latest, each manifest",
            responses={404: {"description": "no complete version of that model"}})
async def get_model(name: str = Path(pattern=NAME_PATTERN, examples=["dcgan"]),
                    state: AppState = Depends(get_state)) -> dict[str, Any]:
    found = await anyio.to_thread.run_sync(describe_model, state, name)
    if found is None:
        raise HTTPException(404, detail=f"no model named {name!r} with a complete version in the store")
    return found


@router.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"], summary="Readiness: a model is loaded and warmed up",
            responses={503: {"description": "not ready; `detail` says why"}})
async def readyz(state: AppState = Depends(get_state)) -> JSONResponse:
    if not state.registry.ready:
        return JSONResponse({"detail": state.registry.not_ready_reason()}, status_code=503)
    serving = {name: m.version for name, m in state.registry.serving().items()}
    return JSONResponse({"status": "ready", "device": str(state.registry.device), "serving": serving})


@router.get("/metrics", tags=["operations"], response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(state: AppState = Depends(get_state)) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
