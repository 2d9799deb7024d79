"""Refusals that no JSON schema can state, in the operations' own terms: a `Refused` names the field it is about
(`loc`), what to do (`message`) and the reason (`kind`). Each front door translates it: the HTTP API into FastAPI's
422 validation-error shape (service.api.error_responses), the Open Inference Protocol into its 400."""
from __future__ import annotations

from typing import Any, Sequence

MODEL_MISMATCH = "model_mismatch"  # valid for some model, not for the one named
LIMIT_EXCEEDED = "limit_exceeded"  # each field within its bounds, their product over a limit
INVALID_IMAGE = "invalid_image"  # an uploaded file that no image decoder reads
BEYOND_SCHEMA = frozenset({MODEL_MISMATCH, LIMIT_EXCEEDED, INVALID_IMAGE})


class Refused(Exception):
    """A request the model or the settings cannot take, for one field's sake (`where`: the part of the request,
    "body" or "query")."""

    def __init__(self, loc: Sequence[Any], message: str, kind: str, where: str = "body") -> None:
        super().__init__(message)
        self.loc, self.message, self.kind, self.where = list(loc), message, kind, where

    @property
    def detail(self) -> list[dict[str, Any]]:
        """As FastAPI states a field's error."""
        return [{"type": self.kind, "loc": [self.where, *self.loc], "msg": self.message}]
