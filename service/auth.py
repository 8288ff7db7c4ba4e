"""Optional API keys for /v1: `Authorization: Bearer <key>`, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.security import HTTPBearer

from service.errors import InvalidApiKey, MissingApiKey

__all__ = ["require_api_key"]


class _ApiKeyBearer(HTTPBearer):
    """FastAPI's bearer scheme (it documents the security scheme in OpenAPI) that checks the
    key itself: one dependency rather than a check depending on the scheme, since each
    dependency costs FastAPI's solver a few % of a small request (docs/benchmarks-peers.md)."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        keys: list[bytes] = request.app.state.runtime.settings.api_key_bytes()
        if not keys:
            return
        credentials = await super().__call__(request)  # None: no or not a Bearer header
        if (
            credentials is None
            or credentials.scheme.lower() != "bearer"
            or not credentials.credentials
        ):
            raise MissingApiKey(
                "this endpoint needs an API key: send 'Authorization: Bearer <key>'"
            )
        given = credentials.credentials.encode()
        # Compare against every key (no early exit) so timing reveals neither key nor position.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise InvalidApiKey("the API key is not valid for this service")


require_api_key = _ApiKeyBearer(
    auto_error=False,
    scheme_name="HTTPBearer",  # the OpenAPI name it had as a plain HTTPBearer
    description="One of the keys in JEM_API_KEYS.",
)
