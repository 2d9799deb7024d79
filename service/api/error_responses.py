"""Error responses: their documented shapes, and those FastAPI does not get right by itself."""
from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from service.engine.batcher import Overloaded
from service.operations.rejections import Refused
from shared.store import NotFound


class Problem(BaseModel):
    """Every error answer: FastAPI's shape, a sentence or a list of field errors (`loc`, `msg`, `type`)."""

    detail: str | list[dict[str, Any]] = Field(description="what went wrong and what to do about it")


WHY = {
    400: "the body is not JSON (or not UTF-8), or a header is malformed",
    401: "an API key is required (API_KEYS): send `Authorization: Bearer <key>`",
    404: "unknown model or version",
    413: "request body larger than MAX_BODY_BYTES",
    422: "invalid request; `detail` names the field. `type` model_mismatch: valid for another model, not this one "
         "(latent length, coordinates); limit_exceeded: the fields' product is over MAX_IMAGES or MAX_PIXELS; "
         "invalid_image: an upload that is not a picture",
    503: "no model loaded yet, or the service is too busy to answer within MAX_QUEUE_DELAY_MS (then with "
         "Retry-After: the predicted wait in seconds, rounded up)",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these status codes, each with the `Problem` shape."""
    return {code: {"model": Problem, "description": WHY[code]} for code in codes}


def _json_safe(value):
    """NaN and Infinity are valid Python floats but not JSON: echo them back as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


async def refused(request: Request, exc: Refused) -> JSONResponse:
    """The operations' refusal as FastAPI states a field's error: a 422 whose `type` says why."""
    return JSONResponse({"detail": exc.detail}, status_code=422)


async def not_found(request: Request, exc: NotFound) -> JSONResponse:
    """What the store lacks (a model, a version, a file of one): a 404 that names it."""
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def overloaded(request: Request, exc: Overloaded) -> JSONResponse:
    """Admission's refusal (at once, or a queued request dropped at its deadline): a 503 with Retry-After."""
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 for a body that does not fit the schema; 400 for one that is not JSON at all (FastAPI
    says 422 for both). NaN in the input would make the error itself fail to render: echoed as text."""
    errors = _json_safe(jsonable_encoder(exc.errors()))
    status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
    return JSONResponse({"detail": errors}, status_code=status)


async def the_apps_answer(request: Request, error: Exception) -> Response | None:
    """The answer the handler the app registered for `error`'s class (or its nearest base, as Starlette looks it
    up) gives; None where the app registered none: for a path that answers errors outside FastAPI's routing."""
    handlers = request.app.exception_handlers
    handler = next((handlers[cls] for cls in type(error).__mro__ if cls in handlers), None)
    return None if handler is None else await handler(request, error)
