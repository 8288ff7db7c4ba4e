"""`JemHttpToolsProtocol` writes a response's head together with its body: one write for a
small answer (uvicorn makes two), the head alone for HEAD, and no head lost when the app fails
after starting its response or streams its body."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from service.server.protocol import JemHttpToolsProtocol

pytestmark = pytest.mark.anyio


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    if scope["path"] == "/boom":
        raise RuntimeError("after the response started")
    if scope["path"] == "/stream":
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"b"})
        return
    await send({"type": "http.response.body", "body": b"ok"})


async def _exchange(request: bytes) -> _Transport:
    config = Config(app=_app, http=JemHttpToolsProtocol, lifespan="off", log_level="critical")
    protocol = JemHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(request)
    for _ in range(20):  # the app runs as a task
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


async def test_head_and_body_in_one_write() -> None:
    transport = await _exchange(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\nok")


async def test_head_request_gets_the_head_alone() -> None:
    transport = await _exchange(b"HEAD /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"content-length: 2\r\n\r\n")


async def test_streamed_body_starts_with_the_head() -> None:
    transport = await _exchange(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [w[-1:] for w in transport.writes] == [b"a", b"b"]
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


async def test_failure_after_the_start_still_sends_the_head_then_closes() -> None:
    transport = await _exchange(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.closed
