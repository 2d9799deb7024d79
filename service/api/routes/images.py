"""/generate, /sweep and /interpolate: PNG grids from latent vectors (or of a class), the study's
latent-coordinate sweeps (or along semantic directions, or towards classes), and paths between two latents
as grids or looping animations."""
from __future__ import annotations

import anyio
import torch
from fastapi import APIRouter, Request, Response

from service.api.deps import ServicesDep, resolve_model
from service.api.error_responses import error_responses
from service.api.image_responses import (
    CLIENT_CLOSED_REQUEST,
    binary_schema,
    client_gone,
    image_headers,
    png_grid_response,
    png_response,
)
from service.api.limits import RequestLimits
from service.api.schemas import GenerateRequest, InterpolateRequest, LatentRef, LatentSource, SweepRequest
from service.engine.registry import LoadedModel
from service.operations.animation import MEDIA_TYPES, encode_animation
from service.operations.generation import ClientGone, Source, draw, images_of, latents_of
from service.operations.interpolation import path_between
from service.operations.sweeps import Sweep, sweep_of

router = APIRouter(tags=["images"])

PNG_RESPONSE = {
    200: {"content": {"image/png": binary_schema("image/png")},
          "description": "the PNG grid; headers X-Model and X-Model-Version name the model and the resolved version, "
                         "X-Grid the layout (columns, rows, cell size, padding, scale); for a class request, X-Class "
                         "and X-Class-Verified: how many of the images the classifier put in the class"},
    **error_responses(400, 404, 413, 422, 503),
}


def source_of(body: LatentSource, model: LoadedModel, limits: RequestLimits, cls=None,
              truncation: float | None = None, field: tuple = ("class",)) -> Source:
    """A body's latent source in the operations' terms, given latents checked against the model's length."""
    label = f"{model.name} v{model.version}"
    if body.latent is not None:
        limits.check_latent_length(body.latent, model.latent_dim, label, ["latent"])
        latents = torch.tensor([body.latent], dtype=torch.float32)
    elif body.latents is not None:
        for i, row in enumerate(body.latents):
            limits.check_latent_length(row, model.latent_dim, label, ["latents", i])
        latents = torch.tensor(body.latents, dtype=torch.float32)
    else:
        latents = None
    return Source(latents=latents, seed=body.seed or 0, count=body.count or 1, cls=cls, truncation=truncation,
                  field=field)


@router.post("/generate", response_class=Response, responses=PNG_RESPONSE, summary="PNG grid from latent vectors")
async def generate(body: GenerateRequest, request: Request, services: ServicesDep) -> Response:
    """Generate one image per latent and return them as a PNG grid, `nrow` per row; with `class`, `count` images
    of that class from `seed` (a conditional version is given the class: exact, at the cost of any request)."""
    model = await resolve_model(services.registry, body.model, body.version)
    services.limits.check_grid(body.image_count, model.image_shape[1:], body.nrow, body.padding, body.scale,
                               ["latents" if body.latents is not None else "count"])
    try:
        drawn = await draw(model, services.engine, source_of(body, model, services.limits, body.class_,
                                                             body.truncation), client_gone(request))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    headers = {"X-Class": drawn.class_name, "X-Class-Verified": f"{drawn.verified}/{body.count}"} \
        if body.class_ is not None else None
    return await png_response(services, model, drawn.images, body.nrow, body.padding, body.scale, headers=headers)


@router.post("/sweep", response_class=Response, responses=PNG_RESPONSE, summary="Latent-coordinate sweep as a PNG grid")
async def sweep(body: SweepRequest, request: Request, services: ServicesDep) -> Response:
    """The study's experiment: for each of `dims`, one row per value in `values` (dim-major), one column
    per base latent; each row is the base latents with that one coordinate set to (or offset by) the value.
    With `directions` or `classes`, the rows move along semantic directions or towards classes instead; on a
    conditional version, `classes` without `values` gives one row per class over the same base styles."""
    model = await resolve_model(services.registry, body.model, body.version)
    base = latents_of(model, source_of(body, model, services.limits, truncation=body.truncation)).latents
    along = body.along
    layout = sweep_of(model, base, Sweep(along, getattr(body, along), body.values, "values" in body.model_fields_set,
                                         body.mode, body.labels))
    services.limits.check_grid(len(layout.latents), model.image_shape[1:], layout.nrow, body.padding, body.scale,
                               [along])
    return await png_grid_response(request, services, model, layout.latents, layout.nrow, body.padding, body.scale,
                                   layout.row_labels)


ANIMATION_RESPONSE = {
    200: {"content": {media: binary_schema(media) for media in ("image/png", "image/gif", "image/webp")},
          "description": "a PNG grid of the steps, or a looping GIF or WebP with one frame per step"},
    **error_responses(400, 404, 413, 422, 503),
}


@router.post("/interpolate", response_class=Response, responses=ANIMATION_RESPONSE, name="interpolate",
             summary="The path between two latents, as a grid or a looping animation")
async def interpolate_route(body: InterpolateRequest, request: Request, services: ServicesDep) -> Response:
    """`steps` images from `start` to `end`, both included: along the great circle (slerp, the default) or the
    straight line (lerp). A PNG grid, or a GIF/WebP that loops with `frame_ms` per frame. On a conditional version
    the ends may name classes, and the path goes from one class to the other (the class weights along the
    straight line, z as `method` says)."""
    model = await resolve_model(services.registry, body.model, body.version)
    start, end = (ref_source(ref, model, services.limits, [name], body.truncation)
                  for name, ref in (("start", body.start), ("end", body.end)))
    latents = path_between(model, start, end, body.steps, body.method)
    nrow = body.nrow or body.steps
    if body.format == "png":
        services.limits.check_grid(body.steps, model.image_shape[1:], nrow, body.padding, body.scale, ["steps"])
        return await png_grid_response(request, services, model, latents, nrow, body.padding, body.scale)
    services.limits.check_grid(body.steps, model.image_shape[1:], 1, 0, body.scale, ["steps"])  # the frames
    try:
        images = await images_of(model.batcher, latents, client_gone(request))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    data = await anyio.to_thread.run_sync(encode_animation, images, body.format, body.frame_ms, body.scale,
                                          limiter=services.inference)
    services.telemetry.images_generated(model.name, model.version, images.shape[0])
    return Response(data, media_type=MEDIA_TYPES[body.format], headers=image_headers(model, images.shape[0]))


def ref_source(ref: LatentRef, model: LoadedModel, limits: RequestLimits, loc: list,
               truncation: float | None) -> Source:
    """The source of one latent: given (its length checked), or the `index`-th its seed draws; with its class."""
    latents = None
    if ref.latent is not None:
        limits.check_latent_length(ref.latent, model.latent_dim, f"{model.name} v{model.version}", [*loc, "latent"])
        latents = torch.tensor([ref.latent], dtype=torch.float32)
    return Source(latents=latents, seed=ref.seed or 0, count=(ref.index or 0) + 1, cls=ref.class_,
                  truncation=truncation, field=(*loc, "class"))


# served by the lean path (service/api/lane.py) as declared above, by the same endpoints, without FastAPI's
# per-request machinery
LEAN = {endpoint: endpoint for endpoint in (generate, sweep, interpolate_route)}
