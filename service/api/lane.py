"""The lean path of the image routes: POST /generate, /sweep and /interpolate, and the Open Inference Protocol's
infer routes, without FastAPI's per-request machinery.

On a one-image request FastAPI's walk through the nested routers, its dependency solving and its JSON
parsed into dicts and then validated cost about as much as everything else the request does (measured
with `benchmarks/request_cost.py`). This ASGI middleware, the innermost of the app, answers those three
routes itself: it reads the body the body-limit middleware has already buffered, validates a valid one in one pass
from the bytes with the same pydantic model (`model_validate_json`), checks the API key with the same
`HTTPBearer` scheme and `check_api_key`, and awaits the same endpoint function. Errors are rendered by the
same handlers FastAPI uses, so answers are identical (`tests/test_lane.py` compares them request by
request). FastAPI still declares these routes (the OpenAPI schema, /docs) and serves every other request.

A route whose path has parameters (`/v2/models/{name}/infer`) takes its body as it comes: its endpoint reads the
request, checks the key and renders its own errors (the protocol's shape). Parameters that do not match their
patterns go FastAPI's way, for FastAPI's exact answer.

The lean path declares no route of its own: `lean_table` makes its table from the route modules' FastAPI routes
(their paths, their body models from the endpoints' signatures), for the endpoints each route module marks as lean.
"""
from __future__ import annotations

import email.message
import json
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, get_type_hints

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.auth import SCHEME, check_api_key
from service.api.error_responses import the_apps_answer

Endpoint = Callable[[Any, Request, Any], Awaitable[Response]]  # (body, request, services) -> response
# (request, services, keys required) -> response, for a route with path parameters (request.path_params)
RawEndpoint = Callable[[Request, Any, bool], Awaitable[Response]]


@dataclass(frozen=True)
class LeanRoute:
    path: str  # also what the request metrics label the route with, as they label FastAPI's routes
    body: type[BaseModel]
    endpoint: Endpoint


@dataclass(frozen=True)
class LeanRawRoute:
    path: str  # a template, `{param}` for each parameter: the metrics' route label
    params: dict[str, str]  # each parameter's pattern, as its FastAPI route declares it
    endpoint: RawEndpoint

    @property
    def pattern(self) -> re.Pattern:
        regex = re.escape(self.path)
        for name, pattern in self.params.items():
            regex = regex.replace(re.escape(f"{{{name}}}"), f"(?P<{name}>{pattern.strip('^$')})")
        return re.compile(regex)


def lean_table(routes: Iterable[BaseRoute], lean: Mapping[Callable, Callable],
                patterns: Mapping[str, str]) -> list[LeanRoute | LeanRawRoute]:
    """The lean path's table, made from FastAPI `routes` as declared: each one whose endpoint is a key of `lean`,
    served by the endpoint it maps to; a path without parameters with the body model of its endpoint's `body`
    parameter, a path with parameters with each one's pattern from `patterns` (as its route declares it)."""
    made: list[LeanRoute | LeanRawRoute] = []
    found = set()
    for route in routes:
        if not (isinstance(route, APIRoute) and route.endpoint in lean):
            continue
        found.add(route.endpoint)
        if route.param_convertors:
            made.append(LeanRawRoute(route.path, {name: patterns[name] for name in route.param_convertors},
                                     lean[route.endpoint]))
        else:
            made.append(LeanRoute(route.path, get_type_hints(route.endpoint)["body"], lean[route.endpoint]))
    if missing := [endpoint.__name__ for endpoint in lean if endpoint not in found]:
        raise ValueError(f"lean endpoints without a route in the app: {', '.join(missing)}")
    return made


class LeanRoutes:
    """Serve `routes` (POST only, by exact path or by template) directly; pass everything else to the app."""

    def __init__(self, app: ASGIApp, routes: list[LeanRoute | LeanRawRoute], keys_required: bool) -> None:
        self.app = app
        self.routes = {route.path: route for route in routes if isinstance(route, LeanRoute)}
        self.templates = [(route.pattern, route) for route in routes if isinstance(route, LeanRawRoute)]
        self.keys_required = keys_required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            return await self.app(scope, receive, send)
        route = self.routes.get(scope["path"])
        if route is None:
            return await self._templated(scope, receive, send)
        scope["route"] = route
        request = Request(scope, receive)
        services = scope["app"].state.services
        try:
            raw, content_type = await request.body(), request.headers.get("content-type")
            body = valid_body(route.body, raw, content_type)
            if body is None:  # not the usual case: FastAPI's way, in FastAPI's order (400, then 401, then 422)
                data = read_json(raw, content_type)
            if self.keys_required:
                check_api_key(services.api_keys, await SCHEME(request))
            if body is None:
                body = validate(route.body, data)
            response = await route.endpoint(body, request, services)
        except Exception as e:  # answered by the app's own handler for it: the same answer FastAPI's way gives
            response = await the_apps_answer(request, e)
            if response is None:
                raise
        await response(scope, receive, send)

    async def _templated(self, scope: Scope, receive: Receive, send: Send) -> None:
        for pattern, route in self.templates:
            if match := pattern.fullmatch(scope["path"]):
                scope["route"], scope["path_params"] = route, match.groupdict()
                response = await route.endpoint(Request(scope, receive), scope["app"].state.services,
                                                self.keys_required)
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


MISSING = object()  # no body at all


def valid_body(model: type[BaseModel], body: bytes, content_type: str | None) -> BaseModel | None:
    """The request model, validated in one pass from JSON bytes; None for anything else (no body, another
    content type, invalid JSON or fields), which then goes FastAPI's way for FastAPI's exact answer."""
    if not body or not _is_json(content_type):
        return None
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return None


def read_json(body: bytes, content_type: str | None) -> Any:
    """The body as FastAPI reads it: parsed when declared JSON, else the bytes; its 400s for what does not parse."""
    if not body:
        return MISSING
    if not _is_json(content_type):
        return body  # validated as it is, and refused
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", e.pos), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": e.msg}}]) from None
    except ValueError:  # not text at all (bad UTF-8)
        raise HTTPException(400, detail="There was an error parsing the body") from None


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    """FastAPI's validation of a body it has read, with its errors (located under "body")."""
    if data is MISSING:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        return model.model_validate(data, from_attributes=True)
    except ValidationError as e:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])}
                                      for error in e.errors(include_url=False)]) from None


def _is_json(content_type: str | None) -> bool:
    """application/json or application/*+json, as FastAPI decides it."""
    if content_type == "application/json":
        return True
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))
