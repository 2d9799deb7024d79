"""The Open Inference Protocol's error answers: every error of its routes as `{"error": "..."}`, with the status and
headers (Retry-After) the rest of the API would give, except that a request the model cannot take is a 400 (the
protocol's word for it), not FastAPI's 422."""
from __future__ import annotations

import json
from typing import Any, Awaitable

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from service.api.error_responses import the_apps_answer
from service.api.inference_protocol import ProtocolError


def _message(detail: Any) -> str:
    if isinstance(detail, list):  # FastAPI's field errors: "loc: msg" each
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in detail)
    return str(detail)


class ProtocolRoute(APIRoute):
    """A route whose every error is answered in the protocol's shape."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await answered(request, handler(request))

        return route


async def answered(request: Request, work: Awaitable[Response]) -> Response:
    """The response `work` gives, or its error: the answer the rest of the API gives (the app's own handlers:
    status, Retry-After), in the protocol's shape, and a 422 as the protocol's 400."""
    try:
        return await work
    except ProtocolError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    except Exception as e:
        answer = await the_apps_answer(request, e)
        if answer is None:
            raise
        status = 400 if answer.status_code == 422 else answer.status_code
        headers = {k: v for k, v in answer.headers.items() if k not in ("content-length", "content-type")}
        return JSONResponse({"error": _message(json.loads(answer.body)["detail"])}, status_code=status,
                            headers=headers)


class ProtocolErrorBody(BaseModel):
    """The protocol's error answer."""

    error: str = Field(description="what went wrong and what to do about it")


def documented(description: str) -> dict:
    return {"model": ProtocolErrorBody, "description": description}


KEY_REQUIRED = {401: documented("an API key is required (API_KEYS): send `Authorization: Bearer <key>`")}
ERRORS = {400: documented("a request the model cannot take: `error` says why"),
          404: documented("no such model or version"),
          503: documented("too busy (Retry-After: the predicted wait), or no model loaded yet")}
