"""How images leave the service: a PNG grid (encoded inline when small, in a worker thread when large) with the
headers that name its model and layout, and the request dropped, its forward with it, when its client has gone."""
from __future__ import annotations

import anyio
import torch
from fastapi import Request, Response

from service.api.deps import Services
from service.engine.registry import LoadedModel
from service.operations.generation import ClientGone, Gone, images_of
from shared.imaging.grids import grid_array, grid_size
from shared.imaging.png import encode_png

INLINE_PIXELS = 300_000  # grids up to this size encode in about a millisecond: cheaper than a thread hop
CLIENT_CLOSED_REQUEST = 499  # nobody reads it: the status the access log and metrics record


def binary_schema(media_type: str) -> dict:
    """A binary body as OpenAPI 3.1 states it, and as client generators read it (bytes, a Blob, a File)."""
    return {"schema": {"type": "string", "format": "binary", "contentMediaType": media_type}}


def client_gone(request: Request) -> Gone:
    """What the operations watch to drop a request whose client has gone: the connection's end (or the request's
    body read to its end, after which nothing else can arrive)."""
    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    return gone


def image_headers(model: LoadedModel, count: int) -> dict[str, str]:
    return {"X-Model": model.name, "X-Model-Version": str(model.version), "X-Image-Count": str(count),
            "Cache-Control": "no-store"}


async def png_grid_response(request: Request, services: Services, model: LoadedModel, latents: torch.Tensor,
                            nrow: int, padding: int, scale: int, row_labels: list[str] | None = None,
                            headers: dict[str, str] | None = None) -> Response:
    """Batched forward, then the grid and its PNG."""
    try:
        images = await images_of(model.batcher, latents, client_gone(request))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return await png_response(services, model, images, nrow, padding, scale, row_labels, headers)


async def png_response(services: Services, model: LoadedModel, images: torch.Tensor, nrow: int, padding: int,
                       scale: int, row_labels: list[str] | None = None, headers: dict[str, str] | None = None) -> Response:
    """The grid of uint8 images and its PNG: inline when small (a thread hop costs more than the work), in a
    worker thread when large, so the event loop stays responsive."""

    answer_headers = {**image_headers(model, images.shape[0]), **grid_header(images.shape, nrow, padding, scale),
                      **(headers or {})}
    width, height = grid_size(images.shape[0], model.image_shape[1:], nrow, padding, scale)
    if width * height <= INLINE_PIXELS and not row_labels:
        png = encode_png(grid_array(images, nrow, padding, scale))
    else:
        png = await anyio.to_thread.run_sync(lambda: encode_png(grid_array(images, nrow, padding, scale, row_labels)),
                                             limiter=services.inference)
    services.telemetry.images_generated(model.name, model.version, images.shape[0])
    return Response(png, media_type="image/png", headers=answer_headers)


def grid_header(shape: torch.Size, nrow: int, padding: int, scale: int) -> dict[str, str]:
    """X-Grid: the layout, so that a client splits the grid back into the images exactly (row labels, when
    there are any, are a margin on the left: the width the layout leaves over)."""
    n, _, h, w = shape
    columns = max(1, min(nrow, n))
    return {"X-Grid": f"columns={columns}; rows={-(-n // columns)}; cell={h}x{w}; padding={padding}; scale={scale}"}
