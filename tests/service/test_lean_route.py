"""The lean path of predict and ood (service/lean_route.py) answers as FastAPI's handler does.

Every request is sent twice to the same app: once as it is served, once with the lean path
turned off (it defers to FastAPI while OpenTelemetry data is present, which the test fakes).
Plain queries must take the lean path (FastAPI's solver never runs) and everything else FastAPI's,
with the same status, body (timings aside) and headers.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

import service.lean_route
from service.auth import require_api_key
from service.lean_route import LeanRoute, lean, plain_bool
from service.route_common import PredictorDep
from tests.service._compare import comparable
from tests.service.conftest import make_settings, png_bytes, serve

pytestmark = pytest.mark.anyio

# query string, whether the lean path answers it
PREDICT_QUERIES = [
    ("", True),
    ("top_k=5", True),
    ("ood=full&top_k=2&normalize=false", True),
    ("normalize=true&unknown=1", True),
    ("top_k=0", False),  # 422
    ("top_k=-1", False),
    ("top_k=abc", False),
    ("top_k=03", True),  # 3, as pydantic reads it
    ("top_k=%2B3", False),
    ("top_k=%203", False),
    ("top_k=99", True),  # InvalidParameters over JEM_MAX_TOP_K, raised by the endpoint
    ("ood=bad", False),
    ("normalize=1", False),
    ("normalize=maybe", False),
    ("top_k=2&top_k=3", False),
]
OOD_QUERIES = [("", True), ("normalize=false", True), ("normalize=no", False), ("x=1", True)]

# each app generates its own request id
_comparable = functools.partial(comparable, ignore_headers=("x-request-id",))


@pytest.fixture
def solver_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts FastAPI's dependency solving."""
    import fastapi.routing

    calls: list[int] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return calls


def _lean(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    """The lean path defers to FastAPI while OpenTelemetry data is present: faked to turn it off."""
    data = None if on else object()
    monkeypatch.setattr(service.lean_route, "get_telemetry_data", lambda: data)


@pytest.mark.parametrize(("path", "queries"), [("predict", PREDICT_QUERIES), ("ood", OOD_QUERIES)])
async def test_lean_answers_as_fastapi(
    store_root: Path,
    digits: Any,
    monkeypatch: pytest.MonkeyPatch,
    solver_calls: list[int],
    path: str,
    queries: list[tuple[str, bool]],
) -> None:
    files = [("files", ("a.png", png_bytes(digits.test_u8[0]), "image/png"))]
    async with serve(make_settings(store_root, max_top_k=10)) as client:
        for query, lean_path in queries:
            url = f"/v1/models/served/{path}?{query}"
            solver_calls.clear()
            lean_answer = await client.post(url, files=files)
            assert (not solver_calls) == lean_path, query
            _lean(monkeypatch, on=False)
            fastapi_answer = await client.post(url, files=files)
            _lean(monkeypatch, on=True)
            assert solver_calls, query
            assert _comparable(lean_answer) == _comparable(fastapi_answer), query


@pytest.mark.parametrize(
    ("url", "headers", "status"),
    [
        ("/v1/models/served/predict", {}, 401),
        ("/v1/models/served/predict", {"Authorization": "Bearer wrong"}, 403),
        ("/v1/models/nope/predict", {"Authorization": "Bearer k1"}, 404),
        ("/v1/models/nope/ood", {}, 401),  # the key is checked before the model, as in FastAPI
        ("/v1/models/served/predict?top_k=2", {"Authorization": "Bearer k1"}, 200),
    ],
)
async def test_lean_keys_and_models(
    store_root: Path,
    digits: Any,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    headers: dict[str, str],
    status: int,
) -> None:
    files = [("files", ("a.png", png_bytes(digits.test_u8[0]), "image/png"))]
    async with serve(make_settings(store_root, api_keys="k1")) as client:
        lean_answer = await client.post(url, files=files, headers=headers)
        _lean(monkeypatch, on=False)
        fastapi_answer = await client.post(url, files=files, headers=headers)
    assert lean_answer.status_code == status
    assert _comparable(lean_answer) == _comparable(fastapi_answer)


def test_a_parameter_the_lean_path_does_not_read_is_refused_at_import() -> None:
    router = APIRouter(dependencies=[Depends(require_api_key)], route_class=LeanRoute)

    async def endpoint(
        request: Request, predictor: PredictorDep, normalize: bool = True, extra: int = 0
    ) -> Response:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="extra"):
        router.post("/models/{model}/x")(lean(normalize=plain_bool)(endpoint))

    async def reads_x(request: Request, predictor: PredictorDep, x: str = Query("")) -> Response:
        raise AssertionError("never called")

    router.post("/models/{model}/y")(lean(x=str)(reads_x))  # every parameter read: accepted

    async def aliased(
        request: Request, predictor: PredictorDep, x: str = Query("", alias="y")
    ) -> Response:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="own names"):
        router.post("/models/{model}/z")(lean(x=str)(aliased))
