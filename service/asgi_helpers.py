"""Raw ASGI helpers for the pure-ASGI middleware (service/middleware.py,
service/request_limits.py): a header from the scope, whether a path is /v2, and an error
response sent before the app ever sees the request."""

from __future__ import annotations

import json
from collections.abc import Collection

from starlette.types import Scope, Send

from service.errors import error_body, is_v2

__all__ = ["header", "is_v2", "send_error"]


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes) in an ASGI scope, or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: Collection[tuple[bytes, bytes]] = (),
    *,
    protocol_v2: bool = False,
) -> None:
    """The error shape, then the connection closed (the request may be partly unread).

    /v2 (the Open Inference Protocol) has its own error shape: `{"error": "<message>"}`."""
    error = {"error": message} if protocol_v2 else error_body(code, message)
    body = json.dumps(error).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
