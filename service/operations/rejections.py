"""Refusals that no JSON schema can state, as 422s in FastAPI's own validation-error shape, so a client reads them
like any other: the `type` names the reason."""
from __future__ import annotations

from typing import Any, Sequence

from fastapi import HTTPException

MODEL_MISMATCH = "model_mismatch"  # valid for some model, not for the one named
LIMIT_EXCEEDED = "limit_exceeded"  # each field within its bounds, their product over a limit
INVALID_IMAGE = "invalid_image"  # an uploaded file that no image decoder reads
BEYOND_SCHEMA = frozenset({MODEL_MISMATCH, LIMIT_EXCEEDED, INVALID_IMAGE})


def field_error(loc: Sequence[Any], message: str, kind: str, where: str = "body") -> HTTPException:
    """A 422 in FastAPI's own validation-error shape, for checks that need the model or the settings (`where`: the
    part of the request, "body" or "query")."""
    return HTTPException(422, detail=[{"type": kind, "loc": [where, *loc], "msg": message}])
