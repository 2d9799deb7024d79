"""What can go wrong, as exceptions: one class per kind of answer, each carrying the server's problem detail."""
from __future__ import annotations

from typing import Any


class LatentlabError(Exception):
    """Anything the client raises."""


class APIConnectionError(LatentlabError):
    """The service could not be reached (after the retries)."""


class APITimeoutError(APIConnectionError):
    """The service did not answer in time."""


class APIStatusError(LatentlabError):
    """The service answered with an error status. `detail` is its problem detail: a sentence, or a list of
    field errors (`loc`, `msg`, `type`) for a request that does not fit the schema."""

    status_code: int = 0

    def __init__(self, status_code: int, detail: str | list[dict[str, Any]], headers: dict[str, str] | None = None):
        self.status_code = status_code
        self.detail = detail
        self.headers = headers or {}
        super().__init__(f"{status_code}: {self.message}")

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The field errors (empty when the detail is a sentence)."""
        return self.detail if isinstance(self.detail, list) else []

    @property
    def message(self) -> str:
        """The detail in one line: the sentence, or each field error as `field.path: message (type)`."""
        if not self.errors:
            return str(self.detail)
        first = {}  # a union field fails once per branch: the first branch's complaint is the one to read
        for e in self.errors:
            first.setdefault(field_name(e.get("loc", [])), e)
        return "; ".join(f"{name}: {e.get('msg')} ({e.get('type')})" for name, e in first.items())


class BadRequestError(APIStatusError):
    """400: the body is not JSON, or a header is malformed."""
    status_code = 400


class AuthenticationError(APIStatusError):
    """401: the service needs an API key (`api_key=` or LATENTLAB_API_KEY), or the one sent is wrong."""
    status_code = 401


class NotFoundError(APIStatusError):
    """404: no such model, version or class."""
    status_code = 404


class PayloadTooLargeError(APIStatusError):
    """413: the request body is over the service's MAX_BODY_BYTES."""
    status_code = 413


class UnprocessableEntityError(APIStatusError):
    """422: a field is invalid; `errors` says which (`loc`), what (`msg`) and the kind (`type`: e.g.
    model_mismatch, limit_exceeded, invalid_image)."""
    status_code = 422


class ServiceUnavailableError(APIStatusError):
    """503: no model loaded yet, or the service too busy to answer in time (still so after the retries).
    `retry_after` is the service's predicted wait in seconds."""
    status_code = 503

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


UNION_BRANCHES = {"none", "int", "float", "str", "bool", "list", "dict"}


def field_name(loc: list) -> str:
    """A field error's location as the field's path (`latents.3`), without `body` and pydantic's union-branch
    tags (`function-before[...]`, `none`)."""
    parts = []
    for part in loc[1:] if loc[:1] == ["body"] else loc:
        if isinstance(part, str) and (any(c in part for c in "[(-") or part in UNION_BRANCHES):
            break
        parts.append(str(part))
    return ".".join(parts) or "body"


BY_STATUS = {cls.status_code: cls for cls in (BadRequestError, AuthenticationError, NotFoundError,
                                              PayloadTooLargeError, UnprocessableEntityError, ServiceUnavailableError)}


def status_error(status_code: int, body: Any, headers: dict[str, str]) -> APIStatusError:
    """The exception for an error answer: its class by status, the problem detail from the JSON body."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return BY_STATUS.get(status_code, APIStatusError)(status_code, detail, headers)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the service sends seconds; an HTTP date from a proxy is ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
