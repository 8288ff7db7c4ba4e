"""Remembered lean-route paths (service/hot_path.py) answer as the router's path does.

The same requests go to two apps: one as served (every path after its first request through
`HotPathMiddleware`'s remembered route) and one that remembers nothing (`MAX_PATHS` 0: every
request through the router). Status, body (timings aside), headers, the access-log line and the
request metrics must agree, and the first app must have skipped the router where it could.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

import service.hot_path
from service.app import create_app
from tests.service._compare import comparable
from tests.service.conftest import make_settings, png_bytes, wait_ready

pytestmark = pytest.mark.anyio

KEY = {"Authorization": "Bearer k1"}
# method, url, headers, body kind, whether the remembered route answers it (after the first)
CASES: list[tuple[str, str, dict[str, str], str, bool]] = [
    ("POST", "/v1/models/served/predict", KEY, "png", True),  # routed: remembered from here
    ("POST", "/v1/models/served/predict", KEY, "png", True),
    ("POST", "/v1/models/served/predict?top_k=5&ood=full", KEY, "png", True),
    ("POST", "/v1/models/served/predict?top_k=99", KEY, "png", True),  # the endpoint's 422
    ("POST", "/v1/models/served/predict?top_k=0", KEY, "png", False),  # FastAPI's 422
    ("POST", "/v1/models/served/predict", KEY, "junk", True),  # not an image: 4xx
    ("POST", "/v1/models/served/predict", KEY, "none", True),  # no body
    ("POST", "/v1/models/served/predict", {}, "png", True),  # 401
    ("POST", "/v1/models/served/predict", {"Authorization": "Bearer no"}, "png", True),  # 403
    ("POST", "/v1/models/nope/predict", KEY, "png", False),  # 404, routed...
    ("POST", "/v1/models/nope/predict", KEY, "png", False),  # ... every time: not remembered
    ("GET", "/v1/models/served/predict", KEY, "none", False),  # 405
    ("HEAD", "/v1/models/served/predict", KEY, "none", False),
    ("POST", "/v1/models/served/ood", KEY, "png", False),
    ("POST", "/v1/models/served/ood?normalize=false", KEY, "png", True),
    ("POST", "/v1/models/served/predict/", KEY, "png", False),  # not the route's path
    ("GET", "/healthz", {}, "none", False),
    ("GET", "/healthz", {}, "none", False),
]


def _body(kind: str, digits: Any) -> dict[str, Any]:
    if kind == "png":
        return {"files": [("files", ("a.png", png_bytes(digits.test_u8[0]), "image/png"))]}
    if kind == "junk":
        return {"files": [("files", ("a.png", b"not a png", "image/png"))]}
    return {}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = ("method", "path", "endpoint", "model", "status")
        self.lines.append({k: getattr(record, k) for k in fields})


@pytest.fixture
def access_lines() -> Iterator[_Lines]:
    handler = _Lines()
    logger = logging.getLogger("service.access")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _request_metrics(app: Any) -> list[str]:
    text = generate_latest(app.state.runtime.metrics.registry).decode()
    lines = text.splitlines()
    return sorted(x for x in lines if x.startswith("jem_requests_total{") and "readyz" not in x)


async def _run(store_root: Path, digits: Any, routed: list[int]) -> tuple[list[Any], Any]:
    app = create_app(make_settings(store_root, api_keys="k1", max_top_k=10))
    router_type = type(app.router)
    original = router_type.__call__

    async def counting(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] != "/readyz":
            routed.append(1)
        await original(self, scope, receive, send)

    answers = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(router_type, "__call__", counting)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await wait_ready(client)
                for i, (method, url, headers, kind, hot) in enumerate(CASES):
                    before = len(routed)
                    response = await client.request(
                        method,
                        url,
                        headers={**headers, "X-Request-ID": f"r{i}"},
                        **_body(kind, digits),
                    )
                    answers.append((comparable(response), len(routed) == before, hot))
    return answers, app


async def test_remembered_paths_answer_as_the_router(
    store_root: Path, digits: Any, access_lines: _Lines
) -> None:
    hot_routed: list[int] = []
    hot, hot_app = await _run(store_root, digits, hot_routed)
    hot_lines = list(access_lines.lines)
    access_lines.lines.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service.hot_path.HotPathMiddleware, "MAX_PATHS", 0)
        plain_routed: list[int] = []
        plain, plain_app = await _run(store_root, digits, plain_routed)
    plain_lines = [line for line in access_lines.lines if line["path"] != "/readyz"]
    hot_lines = [line for line in hot_lines if line["path"] != "/readyz"]

    assert len(plain_routed) == len(CASES)  # nothing remembered: every request routed
    for i, ((method, url, *_), (answer, skipped, expected), (plain_answer, *_)) in enumerate(
        zip(CASES, hot, plain, strict=True)
    ):
        assert answer == plain_answer, (method, url)
        assert skipped == (expected and i > 0), (method, url)
    assert hot_lines == plain_lines
    assert _request_metrics(hot_app) == _request_metrics(plain_app)
    assert {line["endpoint"] for line in hot_lines} >= {"predict", "ood"}


async def test_only_served_models_paths_are_remembered(store_root: Path, digits: Any) -> None:
    """Requests for made-up model names (404s) are not remembered: a client cycling through
    names cannot fill the hot path's memory, and the served paths are remembered still."""
    app = create_app(make_settings(store_root))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await wait_ready(client)
            for i in range(40):
                response = await client.post(f"/v1/models/made-up-{i}/ood", **_body("png", digits))
                assert response.status_code == 404
            for _ in range(2):
                response = await client.post("/v1/models/served/predict", **_body("png", digits))
                assert response.status_code == 200
    hot = app.middleware_stack
    while not isinstance(hot, service.hot_path.HotPathMiddleware):
        hot = hot.app  # type: ignore[union-attr]
    assert list(hot.selected) == [("POST", "", "/v1/models/served/predict")]
