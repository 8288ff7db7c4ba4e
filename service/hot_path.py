"""Requests to a lean route (service/lean_route.py) dispatched without the router once its path
has been routed once.

Behind the service's middleware, every predict still went through FastAPI's exception
middleware, its exit-stack middleware, the router's search over the included routers and the
route's request wrapper before the lean handler ran: about 5% of the server's samples for a
single-image predict at concurrency 64 (py-spy, docs/benchmarks-peers.md "The hot path").
`HotPathMiddleware` sits innermost, where the router would be called. The first request to a
path goes through the router as before; if the router picked a lean route, its handler ran and
the path names a served model (`known_model`), the route, its handler, the path parameters and
the exception handlers the request ran under are remembered for that (method, root path, path).
An unknown model's path (a 404) goes through the router every time, so requests for made-up
names do not fill the memory; served models' paths are a few per model. A later request to a
remembered path whose query the lean handler reads itself (`LeanHandler.values`) runs the
handler's lean answer directly, inside the same exception handling (Starlette's
`wrap_app_handling_exceptions` with the app's handlers), so its answers, errors, metrics and
access-log line are the router's (`tests/service/test_hot_path.py`).

The scope holds what the endpoint and the outer middleware read (route, endpoint, path
parameters, router, exception handlers); FastAPI's exit stacks and its routing context are not
made: they serve dependencies with `yield` and form files, which the lean path has none of.

Everything else takes the router: other routes, a lean route's path with a method the route
does not take, a query FastAPI reads (the lean handler's own rule), OpenTelemetry active, and
paths beyond `MAX_PATHS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.lean_route import HANDLER_KEY, LeanHandler

__all__ = ["HotPathMiddleware"]

_HANDLERS_KEY = "starlette.exception_handlers"  # set by Starlette's ExceptionMiddleware


@dataclass(frozen=True)
class _Selected:
    """What the router selected for a path, and the exception handlers it ran under."""

    route: BaseRoute
    router: Any
    endpoint: Callable[..., Any]
    path_params: dict[str, Any]
    handler: LeanHandler
    exception_handlers: Any


class HotPathMiddleware:
    """Innermost middleware: remembered lean-route paths answered without the router."""

    MAX_PATHS = 1024  # distinct (method, root path, path) remembered: a few per served model

    def __init__(self, app: ASGIApp, known_model: Callable[[str], bool]) -> None:
        self.app = app
        self.known_model = known_model  # whether a model name is served
        self.selected: dict[tuple[str, str, str], _Selected] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = (scope["method"], scope.get("root_path", ""), scope["path"])
        selected = self.selected.get(key)
        if selected is None:
            await self.app(scope, receive, send)
            self._remember(key, scope)
            return
        request = Request(scope, receive, send)
        lean = selected.handler
        values = lean.values(request)
        if values is None:
            await self.app(scope, receive, send)
            return
        scope["endpoint"] = selected.endpoint
        scope["path_params"] = dict(selected.path_params)
        scope["route"] = selected.route
        scope["router"] = selected.router  # for request.url_for
        scope[_HANDLERS_KEY] = selected.exception_handlers

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await lean.answer(request, values)
            await response(scope, receive, send)

        await wrap_app_handling_exceptions(app, request)(scope, receive, send)

    def _remember(self, key: tuple[str, str, str], scope: Scope) -> None:
        handler = scope.get(HANDLER_KEY)
        if handler is None or key in self.selected or len(self.selected) >= self.MAX_PATHS:
            return
        if not self.known_model(scope["path_params"].get("model", "")):
            return  # a 404: made-up names must not fill the memory
        self.selected[key] = _Selected(
            route=scope["route"],
            router=scope.get("router"),
            endpoint=scope["endpoint"],
            path_params=dict(scope["path_params"]),
            handler=handler,
            exception_handlers=scope[_HANDLERS_KEY],
        )
