"""The Open Inference Protocol's REST side (KServe's v2 protocol, Triton's HTTP/REST API), beside latentlab's own
routes: the same engine, batcher, API keys, admission and drain, so that tritonclient, KServe's clients, gateways
and health checks that speak the protocol call latentlab unchanged. Each model of the store is a protocol model
and its versions are latentlab's versions (none named: the newest).

Inputs: `latents` FP32 [-1, latent_dim], or `seed` INT64 [-1] (one image per seed: the image `POST /generate`
draws for that seed and count 1); for a class-conditional version `class`, one for all images or one each, as
INT64 indices or BYTES names; the request parameter `truncation`. Outputs: `images` UINT8 [-1, H, W, C] (the
pixels `/generate` puts in its PNG) and, when `outputs` asks for it, `png` BYTES [-1] (one PNG per image, as
binary data). Errors are `{"error": "..."}`: 400 for a request the model cannot take, 404 for an unknown model or
version, 503 with Retry-After when the service is too busy.
"""
from __future__ import annotations

from typing import Any, Awaitable

import anyio
import numpy as np
import torch
from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from service.api.auth import SCHEME, check_api_key
from service.api.deps import Services, ServicesDep, resolve_model
from service.api.inference_protocol import (
    HEADER_LENGTH,
    InferRequest,
    ProtocolError,
    Tensor,
    encode_response,
    parse_request,
)
from service.api.routes.images import CLIENT_CLOSED_REQUEST, client_gone
from service.api.schemas import MAX_SEED
from service.engine.batcher import Overloaded
from service.engine.registry import LoadedModel
from service.operations.generation import ClientGone, Source, draw
from service.operations.rejections import Refused
from shared.imaging.png import encode_png
from shared.store import NAME_PATTERN

SERVER = {"name": "latentlab", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
INPUTS = ("latents", "seed", "class")
OUTPUTS = ("images", "png")


def _message(detail: Any) -> str:
    if isinstance(detail, list):  # FastAPI's field errors: "loc: msg" each
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in detail)
    return str(detail)


class ProtocolRoute(APIRoute):
    """Every answer of these routes in the protocol's shape: errors as `{"error": "..."}`, with the status and
    headers (Retry-After) the rest of the API would give; a request the model cannot take is a 400."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await answered(handler(request))

        return route


async def answered(work: Awaitable[Response]) -> Response:
    """The response `work` gives, or its error in the protocol's shape."""
    try:
        return await work
    except ProtocolError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    except RequestValidationError as e:
        return JSONResponse({"error": _message(e.errors())}, status_code=400)
    except Refused as e:  # the operations' refusal: a request the model cannot take
        return JSONResponse({"error": e.message}, status_code=400)
    except Overloaded as e:
        return JSONResponse({"error": str(e)}, status_code=503, headers={"Retry-After": str(e.retry_after)})
    except HTTPException as e:
        status = 400 if e.status_code == 422 else e.status_code
        return JSONResponse({"error": _message(e.detail)}, status_code=status, headers=e.headers)


class ProtocolErrorBody(BaseModel):
    """The protocol's error answer."""

    error: str = Field(description="what went wrong and what to do about it")


def _documented(description: str) -> dict:
    return {"model": ProtocolErrorBody, "description": description}


probes = APIRouter(prefix="/v2", tags=["inference protocol"], route_class=ProtocolRoute)  # no key, as /readyz
router = APIRouter(prefix="/v2", tags=["inference protocol"], route_class=ProtocolRoute)
KEY_REQUIRED = {401: _documented("an API key is required (API_KEYS): send `Authorization: Bearer <key>`")}
NOT_READY = {400: {"description": "false: not ready"}}
ERRORS = {400: _documented("a request the model cannot take: `error` says why"),
          404: _documented("no such model or version"),
          503: _documented("too busy (Retry-After: the predicted wait), or no model loaded yet")}


@probes.get("", summary="Server metadata", name="server_metadata")
async def server_metadata() -> dict:
    return SERVER


@probes.get("/health/live", summary="Liveness: 200 while the process answers", name="server_live")
async def server_live() -> dict:
    return {"live": True}


@probes.get("/health/ready", summary="Readiness: 200 once a model is loaded and while not draining; else 400",
            name="server_ready", responses=NOT_READY)
async def server_ready(services: ServicesDep) -> JSONResponse:
    ready = services.registry.ready and not services.drain.draining
    return JSONResponse({"ready": ready}, status_code=200 if ready else 400)


VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"
PATH_PATTERNS = {"name": NAME_PATTERN, "version": VERSION_PATTERN}  # what each path parameter must match
ModelName = Path(pattern=PATH_PATTERNS["name"], description="a model of the store", examples=["dcgan"])
VersionNumber = Path(pattern=PATH_PATTERNS["version"], description="one of its versions", examples=["1"])


def metadata(model: LoadedModel, versions: list[int]) -> dict:
    c, h, w = model.image_shape
    inputs = [{"name": "latents", "datatype": "FP32", "shape": [-1, model.latent_dim]},
              {"name": "seed", "datatype": "INT64", "shape": [-1]}]
    if model.stored.manifest.class_names:  # a conditional version: the class it is given
        inputs.append({"name": "class", "datatype": "INT64", "shape": [-1],
                       "parameters": {"classes": model.stored.manifest.class_names, "also": "BYTES class names"}})
    return {"name": model.name, "versions": [str(v) for v in versions], "platform": "pytorch_torchscript",
            "inputs": inputs,
            "outputs": [{"name": "images", "datatype": "UINT8", "shape": [-1, h, w, c]},
                        {"name": "png", "datatype": "BYTES", "shape": [-1]}]}


async def describe(services: Services, name: str, version: int | str) -> dict:
    model = await resolve_model(services.registry, name, version)
    if version != "latest":
        return metadata(model, [model.version])
    stored = await anyio.to_thread.run_sync(services.registry.versions, name)  # reads the store: off the loop
    return metadata(model, [v.version for v in stored] or [model.version])


@router.get("/models/{name}", summary="Model metadata: its versions, input and output tensors", responses=ERRORS,
            name="model_metadata")
async def model_metadata(services: ServicesDep, name: str = ModelName) -> dict:
    return await describe(services, name, "latest")


@router.get("/models/{name}/versions/{version}", summary="A version's metadata", responses=ERRORS,
            name="model_version_metadata")
async def model_version_metadata(services: ServicesDep, name: str = ModelName, version: str = VersionNumber) -> dict:
    return await describe(services, name, int(version))


async def readiness(services: Services, name: str, version: int | str) -> JSONResponse:
    """Ready: in memory now, or (a pinned version) in the store beside a model that is serving."""
    registry = services.registry
    ready = not services.drain.draining and registry.loaded(name, version) is not None
    if not ready and not services.drain.draining and version != "latest" and name in registry.serving():
        stored = await anyio.to_thread.run_sync(registry.versions, name)  # reads the store: off the loop
        ready = any(v.version == version for v in stored)
    return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 400)


@router.get("/models/{name}/ready", summary="Model readiness: 200 when it can be served now; else 400",
            responses=NOT_READY, name="model_ready")
async def model_ready(services: ServicesDep, name: str = ModelName) -> JSONResponse:
    return await readiness(services, name, "latest")


@router.get("/models/{name}/versions/{version}/ready", summary="A version's readiness", responses=NOT_READY,
            name="model_version_ready")
async def model_version_ready(services: ServicesDep, name: str = ModelName, version: str = VersionNumber
                              ) -> JSONResponse:
    return await readiness(services, name, int(version))


INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "properties": {
            "truncation": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "binary_data_output": {"type": "boolean"}}},
        "inputs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "shape", "datatype"], "properties": {
                "name": {"type": "string", "enum": list(INPUTS)},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string", "enum": ["FP32", "INT64", "INT32", "BYTES"]},
                "parameters": {"type": "object", "properties": {
                    "binary_data_size": {"type": "integer", "minimum": 0}}},
                "data": {"type": "array", "items": {}, "description": "the elements, flat or nested, row-major"}}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "enum": list(OUTPUTS)}, "parameters": {"type": "object", "properties": {
                "binary_data": {"type": "boolean"}}}}}}}},
        "example": {"inputs": [{"name": "seed", "datatype": "INT64", "shape": [2], "data": [0, 1]}],
                    "outputs": [{"name": "images"}]}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": f"the binary tensor extension: {HEADER_LENGTH} bytes of JSON, then "
                                                "the inputs' binary data"}}}}
INFER_RESPONSES = {200: {"description": "the outputs, as JSON data or (binary_data) after a JSON header of "
                                        f"{HEADER_LENGTH} bytes", "content": {
                             "application/json": {"schema": {"type": "object"}},
                             "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                   **ERRORS}


@router.post("/models/{name}/infer", summary="Images from latents or seeds, as tensors", name="infer",
             openapi_extra=INFER_BODY, responses=INFER_RESPONSES)
async def infer(request: Request, services: ServicesDep, name: str = ModelName) -> Response:
    return await inference(request, services, name, "latest")


@router.post("/models/{name}/versions/{version}/infer", summary="Images from a version", name="infer_version",
             openapi_extra=INFER_BODY, responses=INFER_RESPONSES)
async def infer_version(request: Request, services: ServicesDep, name: str = ModelName,
                        version: str = VersionNumber) -> Response:
    return await inference(request, services, name, int(version))


async def inference(request: Request, services: Services, name: str, version: int | str) -> Response:
    body = parse_request(await request.body(), request.headers.get(HEADER_LENGTH))
    model = await resolve_model(services.registry, name, version)
    wanted = list(body.outputs) if body.outputs is not None else ["images"]  # png only when asked for
    for requested in wanted:
        if requested not in OUTPUTS:
            raise ProtocolError(f"{name} has no output {requested!r}; it has {', '.join(OUTPUTS)}")
    if "png" in wanted and not body.binary("png"):  # refused before any work, not after it
        raise ProtocolError('output `png` holds binary values: ask for it with `"parameters": {"binary_data": true}`')
    try:
        drawn = await draw(model, services.engine, source_of(body, model, services), client_gone(request))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    pixels = drawn.images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C), as the PNG holds them
    outputs = []
    if "images" in wanted:
        outputs.append(Tensor("images", "UINT8", pixels.shape, pixels))
    if "png" in wanted:
        pngs = np.array([encode_png(image) for image in pixels], dtype=object)
        outputs.append(Tensor("png", "BYTES", (len(pngs),), pngs))
    content, headers = encode_response(model.name, model.version, body, outputs)
    services.telemetry.images_generated(model.name, model.version, pixels.shape[0])
    return Response(content, headers={**headers, "X-Model": model.name, "X-Model-Version": str(model.version)})


async def lean_infer(request: Request, services: Services, keys_required: bool) -> Response:
    """`infer` and `infer_version` on the lean path (service/api/lane.py): the same key check and endpoint."""
    async def work() -> Response:
        if keys_required:
            check_api_key(services.api_keys, await SCHEME(request))
        version = request.path_params.get("version")
        return await inference(request, services, request.path_params["name"],
                               "latest" if version is None else int(version))

    return await answered(work())


def source_of(body: InferRequest, model: LoadedModel, services: Services) -> Source:
    """The request's tensors as a latent source: latents given, or one drawn per seed as /generate draws them, with
    their classes, truncated. What the tensors must be is the protocol's; what they mean, the operations'."""
    unknown = body.inputs.keys() - set(INPUTS)
    if unknown:
        raise ProtocolError(f"{model.name} has no input {sorted(unknown)[0]!r}; it takes latents or seed (and class)")
    given = [n for n in ("latents", "seed") if n in body.inputs]
    if len(given) != 1:
        raise ProtocolError("give exactly one of the inputs `latents` and `seed`")
    psi = body.parameters.get("truncation")
    if "truncation" in body.parameters and (isinstance(psi, bool) or not isinstance(psi, (int, float))
                                            or not 0 < psi <= 1):
        raise ProtocolError("the parameter `truncation` must be a number in (0, 1]")
    if given == ["latents"]:
        tensor = body.inputs["latents"]
        if tensor.datatype != "FP32" or len(tensor.shape) != 2 or tensor.shape[1] != model.latent_dim:
            raise ProtocolError(f"input `latents` must be FP32 of shape [N, {model.latent_dim}] for {model.name} "
                                f"v{model.version}, not {tensor.datatype} {list(tensor.shape)}")
        if not np.isfinite(tensor.data).all():
            raise ProtocolError("input `latents` holds NaN or infinity")
        count = tensor.shape[0]
    else:
        tensor = body.inputs["seed"]
        if tensor.datatype not in ("INT64", "INT32") or len(tensor.shape) != 1:
            raise ProtocolError(f"input `seed` must be INT64 of shape [N], not {tensor.datatype} {list(tensor.shape)}")
        if tensor.data.size and not (0 <= tensor.data.min() and tensor.data.max() <= MAX_SEED):
            raise ProtocolError(f"every seed must be in 0..{MAX_SEED}")
        count = tensor.shape[0]
    if not 0 < count <= services.settings.max_images:
        raise ProtocolError(f"{count} images asked for: give 1 to {services.settings.max_images} (MAX_IMAGES)")
    psi = None if psi is None else float(psi)
    classes = classes_of(body, count)
    if given == ["latents"]:
        return Source(latents=torch.from_numpy(tensor.data.reshape(count, -1).copy()), cls=classes, truncation=psi,
                      field=("class",))
    return Source(seeds=[int(s) for s in tensor.data], cls=classes, truncation=psi)


def classes_of(body: InferRequest, count: int) -> list[str | int] | None:
    """The `class` input: one class (a name or an index) per image, or one for all; None without it."""
    tensor = body.inputs.get("class")
    if tensor is None:
        return None
    if len(tensor.shape) != 1 or tensor.shape[0] not in (1, count):
        raise ProtocolError(f"input `class` must have shape [1] or [{count}], not {list(tensor.shape)}")
    if tensor.datatype == "BYTES":
        try:
            refs: list[str | int] = [value.decode() for value in tensor.data]
        except UnicodeDecodeError:
            raise ProtocolError("input `class`: a class name is not UTF-8") from None
    elif tensor.datatype in ("INT64", "INT32"):
        refs = [int(value) for value in tensor.data]
    else:
        raise ProtocolError(f"input `class` must be INT64 (indices) or BYTES (names), not {tensor.datatype}")
    return refs


# served by the lean path (service/api/lane.py), as declared above, by the endpoint that reads the request itself
LEAN = {infer: lean_infer, infer_version: lean_infer}
