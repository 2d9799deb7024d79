"""The Open Inference Protocol's REST side (KServe's v2 protocol, Triton's HTTP/REST API), beside latentlab's own
routes: the same engine, batcher, API keys, admission and drain, so that tritonclient, KServe's clients, gateways
and health checks that speak the protocol call latentlab unchanged. Each model of the store is a protocol model
and its versions are latentlab's versions (none named: the newest).

The tensors each model takes and gives: service/api/inference_tensors.py; its errors (`{"error": "..."}`: 400 for
a request the model cannot take, 404 for an unknown model or version, 503 with Retry-After when the service is too
busy): service/api/protocol_errors.py.
"""
from __future__ import annotations

import anyio
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from service.api.auth import SCHEME, check_api_key
from service.api.deps import Services, ServicesDep, resolve_model
from service.api.image_responses import CLIENT_CLOSED_REQUEST, client_gone
from service.api.inference_protocol import HEADER_LENGTH, encode_response, parse_request
from service.api.inference_tensors import INFER_BODY, metadata, output_tensors, source_of, wanted_outputs
from service.api.protocol_errors import ERRORS, ProtocolRoute, answered
from service.operations.generation import ClientGone, draw
from shared.store import NAME_PATTERN

SERVER = {"name": "latentlab", "version": "0.1.0", "extensions": ["binary_tensor_data"]}

probes = APIRouter(prefix="/v2", tags=["inference protocol"], route_class=ProtocolRoute)  # no key, as /readyz
router = APIRouter(prefix="/v2", tags=["inference protocol"], route_class=ProtocolRoute)
NOT_READY = {400: {"description": "false: not ready"}}


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
    wanted = wanted_outputs(body, name)
    try:
        drawn = await draw(model, services.engine, source_of(body, model, services.settings.max_images),
                           client_gone(request))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    outputs = output_tensors(drawn.images, wanted)
    content, headers = encode_response(model.name, model.version, body, outputs)
    services.telemetry.images_generated(model.name, model.version, len(drawn.images))
    return Response(content, headers={**headers, "X-Model": model.name, "X-Model-Version": str(model.version)})


async def lean_infer(request: Request, services: Services, keys_required: bool) -> Response:
    """`infer` and `infer_version` on the lean path (service/api/lane.py): the same key check and endpoint."""
    async def work() -> Response:
        if keys_required:
            check_api_key(services.api_keys, await SCHEME(request))
        version = request.path_params.get("version")
        return await inference(request, services, request.path_params["name"],
                               "latest" if version is None else int(version))

    return await answered(request, work())


# served by the lean path (service/api/lane.py), as declared above, by the endpoint that reads the request itself
LEAN = {infer: lean_infer, infer_version: lean_infer}
