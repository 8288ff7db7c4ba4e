"""A FastAPI route that answers well-formed requests without FastAPI's per-request solver.

FastAPI solves a route's dependencies and validates its parameters anew for every request
(`solve_dependencies`), and builds a throw-away `Response` for dependencies to set headers on:
about a tenth of the server's CPU for a single-image predict (py-spy, docs/benchmarks-peers.md
"Server CPU per request"). A `LeanRoute` whose endpoint is marked with `@lean(...)` first reads
the query itself; when every parameter is one it can read exactly as FastAPI would (absent, or
given once in its plain form), it runs the route's dependencies (the API-key check, then the
predictor lookup: the order FastAPI runs them in) and calls the endpoint directly. Anything else
(a repeated or unusual value, a value FastAPI would refuse, OpenTelemetry instrumentation
active) goes through FastAPI's own handler, so every refusal keeps FastAPI's 422 and its message.

The route is checked when it is built: the endpoint's query parameters must be the ones `lean`
names and its dependencies the ones the lean path runs, so a parameter or dependency added later
cannot be skipped silently (an error at import).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request
from fastapi.routing import APIRoute
from fastapi.telemetry import get_telemetry_data
from starlette.responses import Response

from service.auth import require_api_key
from service.route_common import get_predictor

__all__ = [
    "HANDLER_KEY",
    "LeanHandler",
    "LeanRoute",
    "choice",
    "lean",
    "plain_bool",
    "positive_int",
]

# A parser returns the parameter's value, or raises ValueError for "let FastAPI decide".
Parser = Callable[[str], Any]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Response]])

_LEAN_QUERY = "__lean_query__"


def choice(*allowed: str) -> Parser:
    """One of `allowed`, as given (a `Literal[...]` of strings)."""

    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(value)
        return value

    return parse


def positive_int(value: str) -> int:
    """Plain ASCII digits with a value >= 1 (`int` with `ge=1`); signs, spaces, 0: FastAPI."""
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise ValueError(value)
    return int(value)


_BOOLS = {"true": True, "false": False}


def plain_bool(value: str) -> bool:
    """`true` or `false`; pydantic's other spellings (1, yes, on, ...) go through FastAPI."""
    try:
        return _BOOLS[value]
    except KeyError:
        raise ValueError(value) from None


def lean(**query: Parser) -> Callable[[Endpoint], Endpoint]:
    """Mark an endpoint of a `LeanRoute`: `query` names its query parameters and their parsers."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _LEAN_QUERY, query)
        return endpoint

    return mark


# What the lean path runs, in this order: the router's API-key check, the endpoint's predictor.
_DEPENDENCIES = (require_api_key, get_predictor)


# The scope key a lean handler puts itself under when it runs (service.hot_path remembers the
# path then).
HANDLER_KEY = "jem.lean_handler"


class LeanHandler:
    """A lean route's request handler: `values` reads a plain query, `answer` runs the
    dependencies and the endpoint; anything else goes to FastAPI's handler (`full`)."""

    def __init__(
        self,
        full: Callable[[Request], Coroutine[Any, Any, Response]],
        endpoint: Callable[..., Awaitable[Response]],
        parsers: dict[str, Parser],
        defaults: dict[str, Any],
    ) -> None:
        self.full = full
        self.endpoint = endpoint
        self.parsers = parsers
        self.defaults = defaults

    def values(self, request: Request) -> dict[str, Any] | None:
        """The query's values as FastAPI would read them; None: let FastAPI read them (an
        unusual query, or OpenTelemetry active: it records FastAPI's own steps)."""
        if get_telemetry_data() is not None:
            return None
        values = dict(self.defaults)
        if request.scope.get("query_string"):  # no QueryParams parsed for an empty query
            seen = set()
            for name, value in request.query_params.multi_items():
                parse = self.parsers.get(name)
                if parse is None:
                    continue  # FastAPI ignores parameters a route does not declare
                if name in seen:
                    return None
                seen.add(name)
                try:
                    values[name] = parse(value)
                except ValueError:
                    return None
        return values

    async def answer(self, request: Request, values: dict[str, Any]) -> Response:
        """The dependencies in FastAPI's order (API key, then predictor), then the endpoint."""
        await require_api_key(request)
        values["predictor"] = await get_predictor(request.path_params["model"], request)
        values["request"] = request
        return await self.endpoint(**values)

    async def __call__(self, request: Request) -> Response:
        request.scope[HANDLER_KEY] = self
        values = self.values(request)
        if values is None:
            return await self.full(request)
        return await self.answer(request, values)


class LeanRoute(APIRoute):
    """An `APIRoute`; for an endpoint marked with `@lean`, a direct path for plain requests."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()
        parsers: dict[str, Parser] | None = getattr(self.endpoint, _LEAN_QUERY, None)
        if parsers is None:
            return full
        return LeanHandler(full, self.endpoint, parsers, self._check(parsers)).__call__

    def _check(self, parsers: dict[str, Parser]) -> dict[str, Any]:
        """The defaults of the route's query parameters, after checking that the lean path reads
        every parameter and runs every dependency the route declares."""
        dependant = self.dependant
        declared = {field.name: field for field in dependant.query_params}
        where = f"{self.path} ({getattr(self.endpoint, '__name__', self.endpoint)})"
        if set(declared) != set(parsers):
            raise TypeError(f"{where}: @lean names {sorted(parsers)}, the route {sorted(declared)}")
        if any(field.alias != name for name, field in declared.items()):
            raise TypeError(f"{where}: the lean path reads parameters by their own names only")
        if dependant.path_params or dependant.header_params or dependant.cookie_params:
            raise TypeError(f"{where}: only query parameters are read on the lean path")
        if dependant.body_params or dependant.request_param_name != "request":
            raise TypeError(f"{where}: the endpoint takes `request`, and no body parameter")
        calls = [sub.call for sub in dependant.dependencies]
        if calls != list(_DEPENDENCIES):  # router dependencies first, as FastAPI runs them
            raise TypeError(f"{where}: the lean path runs {list(_DEPENDENCIES)}, not {calls}")
        predictor = dependant.dependencies[1]
        if predictor.name != "predictor" or [f.name for f in predictor.path_params] != ["model"]:
            raise TypeError(f"{where}: get_predictor's value is `predictor`, from 'model'")
        return {name: field.default for name, field in declared.items()}
