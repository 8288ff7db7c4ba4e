"""HEAD wherever GET answers (RFC 9110 §9.3.2): probes, pages, metadata.

Starlette's plain routes add HEAD to every GET route; FastAPI's `APIRoute` does not, so
`HEAD /healthz` or `HEAD /` would be 405 (listing HEAD on each route would also put a second
operation per path in the OpenAPI schema).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HeadMiddleware"]


class HeadMiddleware:
    """Routes a HEAD request as the GET it mirrors, and sends that answer's status and headers
    (Content-Length included) without its body. A path with no GET stays 405.

    Add it innermost, so that the access log and metrics outside see HEAD and the route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the GET body's first parts: nothing to send
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        # A copy: the server reads the method of its own scope to leave the body out too.
        inner = {**scope, "method": "GET"}
        try:
            await self.app(inner, receive, headers_only)
        finally:  # what routing found (route, path_params) for the logs and metrics outside
            scope.update((k, v) for k, v in inner.items() if k != "method")
