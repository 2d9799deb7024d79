"""/generate, /sweep and /interpolate: PNG grids from latent vectors, the study's latent-coordinate (or
semantic-direction) sweeps, and paths between two latents as grids or looping animations."""
from __future__ import annotations

import asyncio

import anyio
import numpy as np
import torch
from fastapi import APIRouter, HTTPException, Request, Response

from service.animation import MEDIA_TYPES, encode_animation
from service.deps import Services, ServicesDep, directions_of, resolve_model
from service.engine.batcher import Batcher, Overloaded
from service.engine.registry import LoadedModel
from service.errors import error_responses
from service.interpolation import interpolate
from service.lane import LeanRoute
from service.limits import MODEL_MISMATCH, RequestLimits, field_error
from service.schemas import GenerateRequest, InterpolateRequest, LatentRef, LatentSource, SweepRequest
from shared.imaging.grids import grid_array, grid_size, upscale
from shared.imaging.latents import seeded_latents
from shared.imaging.png import encode_png
from shared.imaging.sampling import direction_sweep_layout, sweep_layout

router = APIRouter(tags=["images"])

INLINE_PIXELS = 300_000  # grids up to this size encode in about a millisecond: cheaper than a thread hop
CLIENT_CLOSED_REQUEST = 499  # nobody reads it: the status the access log and metrics record

PNG_RESPONSE = {
    200: {"content": {"image/png": {}}, "description": "the PNG grid; headers X-Model and X-Model-Version "
                                                       "name the model and the resolved version"},
    **error_responses(400, 404, 413, 422, 503),
}


class ClientGone(Exception):
    """The client disconnected before its images were computed."""


def busy(e: Overloaded) -> HTTPException:
    """A refusal by the engine's admission (at once, or a queued request dropped at its deadline) as a 503."""
    return HTTPException(503, detail=str(e), headers={"Retry-After": str(e.retry_after)})


async def images_for(batcher: Batcher, latents: torch.Tensor, request: Request) -> torch.Tensor:
    """uint8 (n, C, H, W) images of `latents` from the batcher. Raises HTTPException(503) when admission
    refuses the request or drops it at its deadline, and ClientGone if the client disconnects before its
    images are computed (its queued rows are dropped: they cost no forward)."""
    try:
        job = batcher.submit(latents)
    except Overloaded as e:
        raise busy(e) from None
    result = asyncio.wrap_future(job.future)
    # Not cancelled when the images come first: the server ends this receive() itself once the response is
    # complete, which is cheaper than cancelling a task on every request.
    watcher = asyncio.ensure_future(_disconnected(request))
    watcher.add_done_callback(lambda _: job.future.done() or batcher.cancel(job))
    try:
        return await result
    except asyncio.CancelledError:
        if job.cancelled and not watcher.cancelled():  # the client went away, not the server
            raise ClientGone() from None
        raise
    except Overloaded as e:
        raise busy(e) from None


async def _disconnected(request: Request) -> None:
    """Return when the client closes the connection or the response is complete (the body has been read:
    nothing else can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def admit(batcher: Batcher, n: int) -> None:
    """503 at once if `n` more latents would be refused for their predicted wait: before the request costs
    anything more (a flood of refused requests must stay cheap)."""
    try:
        batcher.admit(n)
    except Overloaded as e:
        raise busy(e) from None


def resolve_latents(body: LatentSource, model: LoadedModel, limits: RequestLimits,
                    batcher: Batcher | None = None) -> torch.Tensor:
    """The request's latents as (N, latent_dim) float32, their length checked against the model; with a
    `batcher`, its admission is asked before any is drawn from a seed. The count is bounded by the schema here and checked
    against MAX_IMAGES with the whole grid (`check_grid`)."""
    label = f"{model.name} v{model.version}"
    if body.latent is not None:
        limits.check_latent_length(body.latent, model.latent_dim, label, ["latent"])
        return torch.tensor([body.latent], dtype=torch.float32)
    if body.latents is not None:
        for i, row in enumerate(body.latents):
            limits.check_latent_length(row, model.latent_dim, label, ["latents", i])
        return torch.tensor(body.latents, dtype=torch.float32)
    if batcher is not None:
        admit(batcher, body.count)
    return seeded_latents(body.seed, body.count, model.latent_dim)


@router.post("/generate", response_class=Response, responses=PNG_RESPONSE, summary="PNG grid from latent vectors")
async def generate(body: GenerateRequest, request: Request, services: ServicesDep) -> Response:
    """Generate one image per latent and return them as a PNG grid, `nrow` per row."""
    model = await resolve_model(services.registry, body.model, body.version)
    services.limits.check_grid(body.image_count, model.image_shape[1:], body.nrow, body.padding, body.scale,
                               ["latents" if body.latents is not None else "count"])
    latents = resolve_latents(body, model, services.limits, model.batcher)
    return await png_grid_response(request, services, model, latents, body.nrow, body.padding, body.scale)


@router.post("/sweep", response_class=Response, responses=PNG_RESPONSE, summary="Latent-coordinate sweep as a PNG grid")
async def sweep(body: SweepRequest, request: Request, services: ServicesDep) -> Response:
    """The study's experiment: for each of `dims`, one row per value in `values` (dim-major), one column
    per base latent; each row is the base latents with that one coordinate set to (or offset by) the value."""
    model = await resolve_model(services.registry, body.model, body.version)
    base = resolve_latents(body, model, services.limits)
    along = "dims" if body.directions is None else "directions"
    for i, d in enumerate(getattr(body, along)):
        if d >= model.latent_dim:
            raise field_error([along, i], f"{along[:-1]} {d} is out of range: {model.name} has {model.latent_dim}, "
                                          f"0..{model.latent_dim - 1}", MODEL_MISMATCH)
    n = len(getattr(body, along)) * len(body.values) * base.shape[0]
    services.limits.check_grid(n, model.image_shape[1:], base.shape[0], body.padding, body.scale, [along])
    admit(model.batcher, n)
    if body.directions is None:
        layout = sweep_layout(base, body.dims, body.values, body.mode, body.labels)
    else:
        vectors = torch.from_numpy(directions_of(model).vectors[body.directions])
        layout = direction_sweep_layout(base, vectors, body.directions, body.values, body.mode, body.labels)
    return await png_grid_response(request, services, model, layout.latents, layout.nrow, body.padding, body.scale,
                                   layout.row_labels)


ANIMATION_RESPONSE = {
    200: {"content": {"image/png": {}, "image/gif": {}, "image/webp": {}},
          "description": "a PNG grid of the steps, or a looping GIF or WebP with one frame per step"},
    **error_responses(400, 404, 413, 422, 503),
}


@router.post("/interpolate", response_class=Response, responses=ANIMATION_RESPONSE,
             summary="The path between two latents, as a grid or a looping animation")
async def interpolate_route(body: InterpolateRequest, request: Request, services: ServicesDep) -> Response:
    """`steps` images from `start` to `end`, both included: along the great circle (slerp, the default) or the
    straight line (lerp). A PNG grid, or a GIF/WebP that loops with `frame_ms` per frame."""
    model = await resolve_model(services.registry, body.model, body.version)
    ends = [latent_of(ref, model, services.limits, [name]) for name, ref in (("start", body.start), ("end", body.end))]
    latents = torch.from_numpy(interpolate(*ends, body.steps, body.method))
    nrow = body.nrow or body.steps
    if body.format == "png":
        services.limits.check_grid(body.steps, model.image_shape[1:], nrow, body.padding, body.scale, ["steps"])
        return await png_grid_response(request, services, model, latents, nrow, body.padding, body.scale)
    services.limits.check_grid(body.steps, model.image_shape[1:], 1, 0, body.scale, ["steps"])  # the frames
    try:
        images = await images_for(model.batcher, latents, request)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    def encode() -> bytes:
        frames = np.stack([upscale(frame, body.scale) for frame in images.numpy().transpose(0, 2, 3, 1)])
        return encode_animation(frames, body.format, body.frame_ms)

    data = await anyio.to_thread.run_sync(encode, limiter=services.inference)
    services.telemetry.images_generated(model.name, model.version, images.shape[0])
    return Response(data, media_type=MEDIA_TYPES[body.format], headers=image_headers(model, images.shape[0]))


def latent_of(ref: LatentRef, model: LoadedModel, limits: RequestLimits, loc: list) -> np.ndarray:
    """The (latent_dim,) vector a reference names, its length checked against the model."""
    if ref.latent is not None:
        limits.check_latent_length(ref.latent, model.latent_dim, f"{model.name} v{model.version}", [*loc, "latent"])
        return np.asarray(ref.latent, dtype=np.float32)
    index = ref.index or 0
    return seeded_latents(ref.seed, index + 1, model.latent_dim)[index].numpy()


def image_headers(model: LoadedModel, count: int) -> dict[str, str]:
    return {"X-Model": model.name, "X-Model-Version": str(model.version), "X-Image-Count": str(count),
            "Cache-Control": "no-store"}


async def png_grid_response(request: Request, services: Services, model: LoadedModel, latents: torch.Tensor,
                            nrow: int, padding: int, scale: int, row_labels: list[str] | None = None) -> Response:
    """Batched forward, then the grid and its PNG: inline when small (a thread hop costs more than the
    work), in a worker thread when large, so the event loop stays responsive."""
    try:
        images = await images_for(model.batcher, latents, request)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    def encode() -> bytes:
        return encode_png(grid_array(images, nrow, padding, scale, row_labels))

    width, height = grid_size(images.shape[0], model.image_shape[1:], nrow, padding, scale)
    if width * height <= INLINE_PIXELS and not row_labels:
        png = encode()
    else:
        png = await anyio.to_thread.run_sync(encode, limiter=services.inference)
    services.telemetry.images_generated(model.name, model.version, images.shape[0])
    return Response(png, media_type="image/png", headers=image_headers(model, images.shape[0]))


# served by the lean path (service/lane.py): the same endpoints, without FastAPI's per-request machinery
LEAN_ROUTES = [LeanRoute("/generate", GenerateRequest, generate), LeanRoute("/sweep", SweepRequest, sweep),
               LeanRoute("/interpolate", InterpolateRequest, interpolate_route)]
