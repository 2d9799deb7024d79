"""API keys: `Authorization: Bearer <key>` on every route that serves models, when keys are configured.

Keys come from API_KEYS (comma-separated) and API_KEYS_FILE (one per line, `#` comments); with none,
the service is open, as before. Comparison is constant-time, and keys are held as secrets so that no
log line, error or metric can print them.
"""
from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import UserError

SCHEME = HTTPBearer(
    auto_error=False, scheme_name="apiKey", bearerFormat="API key",
    description="One of the service's API_KEYS, sent as `Authorization: Bearer <key>`; needed only when keys are set.")


class KeysFileError(UserError):
    """API_KEYS_FILE cannot be read, or holds no key."""


def read_keys(inline: str, file: Path | None) -> tuple[bytes, ...]:
    """The configured keys: API_KEYS' comma-separated entries and API_KEYS_FILE's lines, blanks and # ignored."""
    keys = [k.strip() for k in inline.split(",")]
    if file is not None:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise KeysFileError(f"API_KEYS_FILE {file} cannot be read: {e}") from None
        found = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not found:
            raise KeysFileError(f"API_KEYS_FILE {file} holds no key (one per line); unset it to run without keys")
        keys += found
    return tuple(k.encode() for k in keys if k)


class ApiKeys:
    def __init__(self, keys: tuple[bytes, ...]) -> None:
        self._keys = keys

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:  # never the keys themselves
        return f"ApiKeys({len(self._keys)} keys)"

    def accepts(self, presented: str) -> bool:
        """Constant-time in the key's content: every configured key is compared, all the way."""
        candidate = presented.encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched


def unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="latentlab"' + (f', error="{error}"' if error else "")
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": challenge})


def check_api_key(keys: ApiKeys, credentials: HTTPAuthorizationCredentials | None) -> None:
    """401 unless the request carried one of the keys (`credentials`: what SCHEME read from its headers)."""
    if credentials is None:
        raise unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    if not keys.accepts(credentials.credentials):
        raise unauthorized("the API key is not valid", error="invalid_token")


async def require_api_key(request: Request,
                          credentials: HTTPAuthorizationCredentials | None = Depends(SCHEME)) -> None:
    """Attached to the protected routes only when keys are configured (so the schema asks for them only then)."""
    check_api_key(request.app.state.services.api_keys, credentials)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: assume it can be reached from elsewhere
        return False
