"""The Open Inference Protocol's error answers: every error of its routes as `{"error": "..."}`, with the status and
headers (Retry-After) the rest of the API would give, except that a request the model cannot take is a 400 (the
protocol's word for it), not FastAPI's 422."""
from __future__ import annotations

from typing import Any, Awaitable

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from service.api.inference_protocol import ProtocolError
from service.engine.batcher import Overloaded
from service.operations.rejections import Refused
from shared.store import NotFound


def _message(detail: Any) -> str:
    if isinstance(detail, list):  # FastAPI's field errors: "loc: msg" each
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in detail)
    return str(detail)


class ProtocolRoute(APIRoute):
    """A route whose every error is answered in the protocol's shape."""

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
    except NotFound as e:
        return JSONResponse({"error": str(e)}, status_code=404)
    except Overloaded as e:
        return JSONResponse({"error": str(e)}, status_code=503, headers={"Retry-After": str(e.retry_after)})
    except HTTPException as e:
        status = 400 if e.status_code == 422 else e.status_code
        return JSONResponse({"error": _message(e.detail)}, status_code=status, headers=e.headers)


class ProtocolErrorBody(BaseModel):
    """The protocol's error answer."""

    error: str = Field(description="what went wrong and what to do about it")


def documented(description: str) -> dict:
    return {"model": ProtocolErrorBody, "description": description}


KEY_REQUIRED = {401: documented("an API key is required (API_KEYS): send `Authorization: Bearer <key>`")}
ERRORS = {400: documented("a request the model cannot take: `error` says why"),
          404: documented("no such model or version"),
          503: documented("too busy (Retry-After: the predicted wait), or no model loaded yet")}
