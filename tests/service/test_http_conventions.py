"""HTTP conventions a mature service keeps: HEAD wherever GET answers (probes, pages, metadata),
and every operation listed once in the OpenAPI schema (so once in Swagger UI)."""

from __future__ import annotations

import httpx
import pytest

from tests.service._metrics import requests_total

pytestmark = pytest.mark.anyio

GET_PATHS = (
    "/",
    "/ui/",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/served/ready",
    "/v2/models/served/versions/1/ready",
    "/v2/models/served",
    "/v1/models",
    "/v1/models/served",
    "/v1/models/unknown",  # a 404 is a 404 for HEAD too
)


async def test_head_answers_wherever_get_does(client: httpx.AsyncClient) -> None:
    for path in GET_PATHS:
        get = await client.get(path)
        head = await client.head(path)
        assert head.status_code == get.status_code, (path, head.status_code, get.status_code)
        assert head.content == b"", path
        assert head.headers.get("content-type") == get.headers.get("content-type"), path
        if "content-length" in get.headers:
            assert head.headers["content-length"] == str(len(get.content)), path
    for path in ("/healthz", "/metrics", "/ui/static/favicon.svg"):
        assert (await client.head(path)).status_code == 200, path
    # a route without GET still says which methods it has
    refused = await client.head("/v1/models/served/predict")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"


async def _healthz_ok(client: httpx.AsyncClient) -> float:
    """jem_requests_total{endpoint="healthz", status="200"} (summed over models)."""
    return requests_total((await client.get("/metrics")).text, "healthz", "200")


async def test_head_requests_are_counted_under_their_route(client: httpx.AsyncClient) -> None:
    before = await _healthz_ok(client)
    for _ in range(3):
        await client.head("/healthz")
    assert await _healthz_ok(client) == before + 3


async def test_every_operation_is_listed_once(client: httpx.AsyncClient) -> None:
    """Swagger UI shows an operation under each of its tags: one tag each, one entry each."""
    paths = (await client.get("/openapi.json")).json()["paths"]
    operations = [(p, m, op) for p, ops in paths.items() for m, op in ops.items()]
    for path, method, op in operations:
        assert len(op["tags"]) == 1, (method, path, op["tags"])
    assert not [(p, m) for p, m, _ in operations if m == "head"]  # HEAD is implied, not listed
    reload = [(p, op["tags"]) for p, m, op in operations if p.endswith("/reload")]
    assert reload == [("/v1/admin/models/{model}/reload", ["admin"])]
