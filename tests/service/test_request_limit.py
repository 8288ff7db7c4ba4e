"""ConcurrencyLimitMiddleware on its own: requests beyond the limit get 503 `overloaded` with
Retry-After in the error shape; probes (v2 model readiness too) and scrapes pass, also under a
--root-path prefix."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.types import Message, Receive, Scope, Send

from service.middleware import PROBE_PATHS, ConcurrencyLimitMiddleware

pytestmark = pytest.mark.anyio

# KServe v2 model readiness, of a model and of one of its versions: probes too.
MODEL_READY_PROBES = {"/v2/models/served/ready", "/v2/models/served/versions/2/ready"}
NOT_PROBES = (
    "/v2/models/served/infer",
    "/v2/models/served",
    "/v2/models/served/versions/2/infer",
    "/v2/models/served/ready/infer",
    "/v2/models/a/b/ready",
    "/v1/models/served/ready",
)


async def _request(app: ConcurrencyLimitMiddleware, path: str, root: str = "") -> list[Message]:
    scope = {"type": "http", "method": "GET", "path": root + path, "root_path": root}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_requests_beyond_the_limit_get_503_and_probes_pass() -> None:
    release = asyncio.Event()

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].endswith("/slow"):
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = ConcurrencyLimitMiddleware(inner, limit=2, retry_after_s=3)
    holders = [asyncio.create_task(_request(app, "/v1/slow")) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert app.in_progress == 2
    refused = await _request(app, "/v1/models/served/predict")
    assert refused[0]["status"] == 503
    assert (b"retry-after", b"3") in refused[0]["headers"]
    assert json.loads(refused[1]["body"])["error"]["code"] == "overloaded"
    for path in sorted(PROBE_PATHS | MODEL_READY_PROBES):
        for root in ("", "/jem"):
            assert (await _request(app, path, root))[0]["status"] == 200, (root, path)
    assert (await _request(app, "/jem/healthz"))[0]["status"] == 503  # not a probe without root
    for path in NOT_PROBES:
        assert (await _request(app, path))[0]["status"] == 503, path
    release.set()
    assert [r[0]["status"] for r in await asyncio.gather(*holders)] == [200, 200]
    assert app.in_progress == 0
    assert (await _request(app, "/v1/models/served/predict"))[0]["status"] == 200
