"""The app driven as uvicorn drives it, message by message: a body cut off by a disconnect is
499 on every route that reads one (no 5xx, no 400, no ERROR record), and a body that stops
arriving is 408 in the error shape with the connection closed. Real-process versions of both
are in tests/hardening/test_server_faults.py."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.types import Message

from service import create_app
from tests.service.conftest import make_settings

pytestmark = pytest.mark.anyio

PARTIAL = {
    "predict JSON": ("/v1/models/served/predict", b"application/json", b'{"pixels": [[['),
    "predict .npy": ("/v1/models/served/predict", b"application/x-npy", b"\x93NUMPY\x01\x00"),
    "predict multipart": (
        "/v1/models/served/predict",
        b"multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n\x89PN',
    ),
    "ood multipart": (
        "/v1/models/served/ood",
        b"multipart/form-data; boundary=b",
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n\x89PN',
    ),
    "generate JSON": ("/v1/models/served/generate", b"application/json", b'{"num_samples": '),
}


@pytest.fixture
async def app(store_root: Path) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(store_root, body_timeout_s=0.3))
    async with app.router.lifespan_context(app):
        while not app.state.runtime.ready:
            await asyncio.sleep(0.02)
        yield app


async def _drive(app: FastAPI, path: str, ctype: bytes, messages: list[Message]) -> list[Message]:
    """Run one POST; `receive` hands out `messages`, then waits as a stalled client does."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", ctype), (b"content-length", b"100000")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    pending = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=30)
    return sent


def _statuses(app: FastAPI) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    app.state.runtime.metrics.tally.flush()  # this turn's updates (service/tally.py)
    for family in app.state.runtime.metrics.registry.collect():
        for s in family.samples:
            if s.name == "jem_requests_total":
                key = (s.labels["endpoint"], s.labels["status"])
                counts[key] = counts.get(key, 0) + s.value
    return counts


async def test_a_body_cut_off_by_a_disconnect_is_499(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for path, ctype, partial in PARTIAL.values():
        body = {"type": "http.request", "body": partial, "more_body": True}
        await _drive(app, path, ctype, [body, {"type": "http.disconnect"}])
    assert _statuses(app) == {
        ("predict", "499"): 3,
        ("ood", "499"): 1,
        ("generate", "499"): 1,
    }
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    access = [r for r in caplog.records if r.name == "service.access"]
    assert [getattr(r, "status", None) for r in access] == [499] * len(PARTIAL)


async def test_a_body_that_stops_arriving_is_408_and_closes(app: FastAPI) -> None:
    for name, (path, ctype, partial) in PARTIAL.items():
        body = {"type": "http.request", "body": partial, "more_body": True}
        sent = await _drive(app, path, ctype, [body])
        start, payload = sent[0], sent[1]
        assert start["status"] == 408, (name, sent)
        assert (b"connection", b"close") in start["headers"]
        assert json.loads(payload["body"])["error"]["code"] == "body_timeout"
    assert set(_statuses(app)) == {("predict", "408"), ("ood", "408"), ("generate", "408")}
