"""Pure ASGI middleware for the size and time limits of one request: its request line and headers
(431), its body's bytes (413, by Content-Length up front and by counting the stream) and the time
the whole body may take to arrive (408). Errors have the API's shape (/v2's own on /v2 paths).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.asgi_helpers import header, is_v2, send_error
from service.errors import BodyTimeout, BodyTooLarge

__all__ = ["BodyLimitMiddleware", "HeaderLimitMiddleware"]


class HeaderLimitMiddleware:
    """431 when the request line and headers exceed `max_bytes`. The HTTP protocol's own cap
    (service.server.protocol) only applies to a head still incomplete after a read: a block that
    comes complete in one read (up to 256 KiB) passes it."""

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
                await send_error(send, 431, "headers_too_large", message)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes`: by Content-Length up front, and by counting the stream;
    408 for a body not complete `timeout_s` after the request's headers (one deadline for the
    whole body, so a client trickling a byte at a time cannot stretch it), the connection closed.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def _message(self, size: str) -> str:
        return (
            f"request body is {size} bytes; the limit is {self.max_bytes} (JEM_MAX_BODY_BYTES): "
            "send fewer or smaller images per request"
        )

    async def _reject(self, scope: Scope, send: Send, size: str) -> None:
        message = self._message(size)
        await send_error(send, 413, "body_too_large", message, protocol_v2=is_v2(scope))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reject(scope, send, length)
            return
        received = 0
        complete = False
        refusal: tuple[int, str, str] | None = None  # status, code, message
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout_s is None else loop.time() + self.timeout_s

        async def counting_receive() -> Message:
            nonlocal received, complete, refusal
            if complete or deadline is None:  # after the body only a disconnect can come
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):  # no task of its own, unlike wait_for
                        message = await receive()
                except TimeoutError:
                    text = (
                        f"the request body was not complete {self.timeout_s:g} s after its "
                        f"headers ({received} bytes received; JEM_BODY_TIMEOUT_S): send the "
                        "whole body without pauses"
                    )
                    refusal = (408, BodyTimeout.code, text)
                    raise BodyTimeout(text) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    text = self._message(f"more than {self.max_bytes}")
                    refusal = (413, BodyTooLarge.code, text)
                    raise BodyTooLarge(text)
            return message

        async def guarded_send(message: Message) -> None:
            # FastAPI turns any error while reading a JSON body into a 400: once the stream
            # went over the limit or its time, the answer is this 413 or 408, whatever the app
            # makes of it, and the connection is closed (the rest of the body is never read).
            if refusal is None:
                await send(message)
            elif message["type"] == "http.response.start":
                await send_error(send, *refusal, protocol_v2=is_v2(scope))

        await self.app(scope, counting_receive, guarded_send)
