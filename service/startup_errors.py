"""A failed start that the service has explained already is not logged again as a traceback.

When a model to serve is missing or damaged (JEM_EXIT_ON_LOAD_ERROR), the runtime logs one line
saying which model and why, and the lifespan raises `ModelsUnavailable`. Starlette then sends the
server `lifespan.startup.failed` with the whole traceback as its message, and uvicorn logs that
message: forty lines of framework frames under the one line that matters. This middleware sends
the failure without the traceback for that one exception (uvicorn logs nothing for an empty
message, then "Application startup failed. Exiting."); every other failure keeps its traceback.
"""

from __future__ import annotations

import sys

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.runtime import ModelsUnavailable

__all__ = ["ExplainedStartupFailureMiddleware"]


class ExplainedStartupFailureMiddleware:
    """Pure ASGI middleware: only the lifespan scope's `lifespan.startup.failed` is changed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_explained(message: Message) -> None:
            # Starlette sends the failure from inside its `except` block: the exception being
            # handled is the lifespan's own
            if message["type"] == "lifespan.startup.failed" and isinstance(
                sys.exc_info()[1], ModelsUnavailable
            ):
                message = {**message, "message": ""}
            await send(message)

        await self.app(scope, receive, send_explained)
