"""Pure ASGI middleware: request ids, access logs and request metrics; the body size limit."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTooLarge, error_body
from service.logs import request_id_var
from service.metrics import Metrics

__all__ = [
    "BodyLimitMiddleware",
    "HeaderLimitMiddleware",
    "RequestContextMiddleware",
]

access_log = logging.getLogger("service.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestContextMiddleware:
    """Gives each request an id (`X-Request-ID`, echoed or generated), logs and counts it."""

    def __init__(self, app: ASGIApp, metrics: Metrics, known_model: Callable[[str], bool]) -> None:
        self.app = app
        self.metrics = metrics
        self.known_model = known_model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _VALID_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            endpoint = getattr(route, "name", None) or "other"
            model = scope.get("path_params", {}).get("model", "")
            model = model if model and self.known_model(model) else ""
            self.metrics.requests.labels(model, endpoint, str(status)).inc()
            self.metrics.request_duration.labels(model, endpoint).observe(elapsed)
            access_log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "endpoint": endpoint,
                    "model": model or None,
                    "status": status,
                    "latency_ms": round(elapsed * 1000, 3),
                },
            )
            request_id_var.reset(token)


async def _send_error(
    send: Send, status: int, code: str, message: str, *, protocol_v2: bool = False
) -> None:
    # /v2 (the Open Inference Protocol) has its own error shape: {"error": "<message>"}
    body = json.dumps({"error": message} if protocol_v2 else error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HeaderLimitMiddleware:
    """431 when the request line and headers exceed `max_bytes`. h11's own cap only applies to
    headers that arrive in pieces: a block that comes in one read (up to 256 KiB) passes it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
            size += sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
            if size > self.max_bytes:
                message = (
                    f"request line and headers are {size} bytes; the limit is {self.max_bytes}: "
                    "send fewer or shorter headers"
                )
                await _send_error(send, 431, "headers_too_large", message)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes`: by Content-Length up front, and by counting the stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: str) -> str:
        return (
            f"request body is {size} bytes; the limit is {self.max_bytes} (JEM_MAX_BODY_BYTES): "
            "send fewer or smaller images per request"
        )

    async def _reject(self, scope: Scope, send: Send, size: str) -> None:
        v2 = str(scope.get("path", "")).startswith("/v2/")
        await _send_error(send, 413, "body_too_large", self._message(size), protocol_v2=v2)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reject(scope, send, length)
            return
        received = 0
        too_large = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge(self._message(f"more than {self.max_bytes}"))
            return message

        async def guarded_send(message: Message) -> None:
            # FastAPI turns any error while reading a JSON body into a 400: once the stream
            # went over the limit, the answer is this 413, whatever the app makes of it.
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._reject(scope, send, f"more than {self.max_bytes}")

        await self.app(scope, counting_receive, guarded_send)
