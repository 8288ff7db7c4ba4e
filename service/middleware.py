"""Pure ASGI middleware: request ids, access logs and request metrics (499 for a client that
went away); the limit on requests in progress (probes exempt). The header and body limits (size,
and time for the body) are in service/request_limits.py."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.asgi_helpers import header, is_v2, send_error
from service.batching import InFlight
from service.logs import AccessLog, request_id_var
from service.metrics import Metrics

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "MODEL_READY_PATH",
    "PROBE_PATHS",
    "VALID_ID",
    "ConcurrencyLimitMiddleware",
    "RequestContextMiddleware",
]

# nginx's status for a request whose client closed the connection before the response: not a
# server error (5xx) nor a client error the client will ever read (4xx); counted on its own.
CLIENT_CLOSED_REQUEST = 499

# Liveness, readiness and scrapes: answered however many requests are in progress (the
# KServe v2 health paths too, for the protocol's own probes)...
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})
# ... and the v2 model readiness probe, of a model or of one of its versions.
MODEL_READY_PATH = re.compile(r"/v2/models/[^/]+(?:/versions/[^/]+)?/ready")

access_log = logging.getLogger("service.access")
VALID_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def _from_disconnect(exc: BaseException) -> bool:
    """Whether `exc` is, or was raised while handling, starlette's ClientDisconnect."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ClientDisconnect):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _route_for(routes: Sequence[BaseRoute], scope: Scope) -> tuple[Any, dict[str, Any]]:
    """The route (and its path parameters) a request would have reached: a request that the
    limits answered before routing is logged and counted under its endpoint, not "other"."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child.get("path_params", {})
    return None, {}


class RequestContextMiddleware:
    """Gives each request an id (`X-Request-ID`, echoed or generated), logs and counts it.

    A client that closes its connection before the response starts is recorded as 499 (one
    INFO access line), whatever the route made of the missing body (starlette's
    ClientDisconnect, FastAPI's 400 for a body it could not read): nobody reads that answer,
    and it is not the server's fault. A request still running when the graceful shutdown time
    is up (uvicorn cancels it) is answered 503 `not_ready` with Retry-After, if nothing was
    sent yet. A request answered before routing (by a limit) is named by the route it would
    have reached (`routes`: the app's).
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        known_model: Callable[[str], bool],
        retry_after_s: int = 1,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.known_model = known_model
        self.retry_after = str(retry_after_s).encode()
        self.routes = routes  # the app's, to name a request answered before routing
        self.access_line = AccessLog(access_log, "request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = header(scope, b"x-request-id")
        # 32 random hex digits, as uuid4().hex spells them, at 0.6-0.9 us a call against 4.4
        request_id = incoming if incoming and VALID_ID.match(incoming) else os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500
        started = client_gone = False

        async def watching_receive() -> Message:
            nonlocal client_gone
            message = await receive()
            if message["type"] == "http.disconnect" and not started:
                client_gone = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = CLIENT_CLOSED_REQUEST if client_gone else message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, watching_receive, send_with_id)
        except Exception as exc:
            if not (client_gone and _from_disconnect(exc)):
                raise
            status = CLIENT_CLOSED_REQUEST  # the route stopped reading: nothing to answer
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running JEM_GRACEFUL_SHUTDOWN_S after SIGTERM
            # (a generation may take longer: JEM_GENERATION_TIME_BUDGET_S); left alone, the
            # client got uvicorn's plain-text 500 and the log a traceback. The task ends here
            # either way, so the cancellation is answered rather than passed on.
            if started:
                raise
            await send_error(
                send_with_id,
                503,
                "not_ready",
                "the service is shutting down and this request did not finish within its "
                "graceful shutdown time (JEM_GRACEFUL_SHUTDOWN_S): retry, on another replica "
                "or after the Retry-After delay",
                [(b"retry-after", self.retry_after)],
                protocol_v2=is_v2(scope),
            )
            access_log.warning("request cancelled at shutdown")
        finally:
            elapsed = time.perf_counter() - start
            route, params = scope.get("route"), scope.get("path_params", {})
            if route is None:  # answered before routing (413, 408, 431, 503 overloaded) or 404
                route, params = _route_for(self.routes, scope)
            endpoint = getattr(route, "name", None) or "other"
            model = params.get("model", "")
            model = model if model and self.known_model(model) else ""
            m = self.metrics
            m.tally.inc(m.child(m.requests, model, endpoint, str(status)))
            m.tally.observe(m.child(m.request_duration, model, endpoint), elapsed)
            self.access_line.log(
                {
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "endpoint": endpoint,
                    "model": model or None,
                    "status": status,
                    "latency_ms": round(elapsed * 1000, 3),
                }
            )
            request_id_var.reset(token)


class ConcurrencyLimitMiddleware:
    """503 `overloaded` with Retry-After beyond `limit` requests in progress in this process.

    uvicorn's own `limit_concurrency` counts every open connection, idle and stalled ones too,
    answers plain text and refuses health probes like any other request: once slow or stalled
    clients hold the slots, Kubernetes restarts a healthy pod. Here probes and scrapes
    (`exempt`, and paths `exempt_pattern` matches in full) are never refused, and the refusal
    has the API's error shape.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        retry_after_s: int,
        exempt: Collection[str] = PROBE_PATHS,
        exempt_pattern: re.Pattern[str] | None = MODEL_READY_PATH,
        counter: InFlight | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s).encode()
        self.exempt = frozenset(exempt)
        self.exempt_pattern = exempt_pattern
        # shared with the micro-batchers (service.batching), which stop waiting for more
        # requests once a batch holds all of them
        self.counter = counter if counter is not None else InFlight()

    @property
    def in_progress(self) -> int:
        return self.counter.value

    def _is_exempt(self, scope: Scope) -> bool:
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):  # uvicorn --root-path prefixes every path with it
            path = path[len(root) :]
        if path in self.exempt:
            return True
        return self.exempt_pattern is not None and self.exempt_pattern.fullmatch(path) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_exempt(scope):
            await self.app(scope, receive, send)
            return
        if self.in_progress >= self.limit:
            message = (
                f"{self.in_progress} requests are in progress; the limit is {self.limit} "
                "(JEM_LIMIT_CONCURRENCY): retry after the Retry-After delay"
            )
            await send_error(
                send,
                503,
                "overloaded",
                message,
                [(b"retry-after", self.retry_after)],
                protocol_v2=is_v2(scope),
            )
            return
        self.counter.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.counter.leave()
