"""/generate and /sweep: PNG grids from latent vectors, and the study's latent-coordinate sweeps."""
from __future__ import annotations

import anyio
import torch
from fastapi import APIRouter, Response

from service.deps import ServicesDep, resolve_model
from service.limits import RequestLimits, field_error
from service.registry import LoadedModel
from service.schemas import GenerateRequest, LatentSource, SweepRequest
from service.telemetry import Telemetry
from shared.imaging.latents import seeded_latents
from shared.imaging.png import png_bytes
from shared.imaging.sampling import sample_image, sweep_image

router = APIRouter(tags=["images"])

PNG_RESPONSE = {
    200: {"content": {"image/png": {}}, "description": "the PNG grid; headers X-Model and X-Model-Version "
                                                       "name the model and the resolved version"},
    404: {"description": "unknown model or version"},
    413: {"description": "request body larger than MAX_BODY_BYTES"},
    422: {"description": "invalid request; `detail` names the field"},
    503: {"description": "no model loaded yet"},
}


def resolve_latents(body: LatentSource, model: LoadedModel, limits: RequestLimits) -> torch.Tensor:
    """The request's latents as (N, latent_dim) float32, checked against the model and the limits."""
    label = f"{model.name} v{model.version}"
    if body.latent is not None:
        limits.check_latent_length(body.latent, model.latent_dim, label, ["latent"])
        return torch.tensor([body.latent], dtype=torch.float32)
    if body.latents is not None:
        limits.check_count(len(body.latents), ["latents"])
        for i, row in enumerate(body.latents):
            limits.check_latent_length(row, model.latent_dim, label, ["latents", i])
        return torch.tensor(body.latents, dtype=torch.float32)
    limits.check_count(body.count, ["count"])
    return seeded_latents(body.seed, body.count, model.latent_dim)


def png_response(png: bytes, model: LoadedModel, n: int, telemetry: Telemetry) -> Response:
    telemetry.images_generated(model.name, model.version, n)
    return Response(png, media_type="image/png", headers={
        "X-Model": model.name, "X-Model-Version": str(model.version), "X-Image-Count": str(n),
        "Cache-Control": "no-store",
    })


@router.post("/generate", response_class=Response, responses=PNG_RESPONSE, summary="PNG grid from latent vectors")
async def generate(body: GenerateRequest, services: ServicesDep) -> Response:
    """Generate one image per latent and return them as a PNG grid, `nrow` per row."""
    model = await resolve_model(services.registry, body.model, body.version)
    latents = resolve_latents(body, model, services.limits)
    n = latents.shape[0]
    services.limits.check_grid(n, model.image_shape[1:], body.nrow, body.padding, body.scale,
                               ["latents" if body.latents is not None else "count"])
    png = await anyio.to_thread.run_sync(
        lambda: png_bytes(sample_image(model.module, latents, device=model.device, nrow=body.nrow,
                                       padding=body.padding, scale=body.scale)), limiter=services.inference)
    return png_response(png, model, n, services.telemetry)


@router.post("/sweep", response_class=Response, responses=PNG_RESPONSE, summary="Latent-coordinate sweep as a PNG grid")
async def sweep(body: SweepRequest, services: ServicesDep) -> Response:
    """The study's experiment: for each of `dims`, one row per value in `values` (dim-major), one column
    per base latent; each row is the base latents with that one coordinate set to (or offset by) the value."""
    model = await resolve_model(services.registry, body.model, body.version)
    base = resolve_latents(body, model, services.limits)
    for i, d in enumerate(body.dims):
        if d >= model.latent_dim:
            raise field_error(["dims", i], f"dim {d} is out of range: {model.name} has coordinates 0..{model.latent_dim - 1}")
    n = len(body.dims) * len(body.values) * base.shape[0]
    services.limits.check_grid(n, model.image_shape[1:], base.shape[0], body.padding, body.scale, ["dims"])
    png = await anyio.to_thread.run_sync(
        lambda: png_bytes(sweep_image(model.module, base, body.dims, body.values, mode=body.mode, labels=body.labels,
                                      device=model.device, padding=body.padding, scale=body.scale)),
        limiter=services.inference)
    return png_response(png, model, n, services.telemetry)
