"""Optional API keys for /v1: `Authorization: Bearer <key>`, compared in constant time."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import InvalidApiKey, MissingApiKey

__all__ = ["require_api_key"]

_bearer = HTTPBearer(auto_error=False, description="One of the keys in JEM_API_KEYS.")


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    keys: list[bytes] = request.app.state.runtime.settings.api_key_bytes()
    if not keys:
        return
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise MissingApiKey("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
    given = credentials.credentials.encode()
    # Compare against every key (no early exit) so timing reveals neither key nor position.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key)
    if not matched:
        raise InvalidApiKey("the API key is not valid for this service")
