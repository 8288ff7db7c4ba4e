"""`JemHttpToolsProtocol` writes a response's head together with its body: one write for a
small answer (uvicorn makes two), the head alone for HEAD, and no head lost when the app fails
after starting its response or streams its body. Also its deadline for request heads: counted
from the connection or from the previous response, not cutting a request in progress; and
uvicorn's keep-alive, kept by the same single timer per connection."""

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
    while (await receive()).get("more_body"):  # the whole body first
        pass
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


# ---- the deadline for request heads ----------------------------------------------------------

TIMEOUT_S = 0.3  # the protocol's JEM_HEADER_TIMEOUT_S in these tests


def _connect(keep_alive_s: float = 5.0) -> tuple[JemHttpToolsProtocol, _Transport]:
    config = Config(app=_app, http=JemHttpToolsProtocol, lifespan="off", log_level="critical")
    protocol = JemHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    protocol._head_timeout_s = TIMEOUT_S
    protocol.timeout_keep_alive = keep_alive_s  # type: ignore[assignment]  # uvicorn's: seconds
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


async def test_a_silent_connection_is_closed_at_the_deadline() -> None:
    protocol, transport = _connect()
    await asyncio.sleep(TIMEOUT_S * 0.6)
    assert not transport.closed
    await asyncio.sleep(TIMEOUT_S * 0.7)
    assert transport.closed
    assert transport.writes == []  # nothing was sent: closed without a word
    protocol.connection_lost(None)


async def test_the_deadline_counts_from_the_previous_response() -> None:
    """Requests on one keep-alive connection for longer than the deadline in all: each wait
    for a head gets its own full deadline; a half-sent head after the last one gets 408."""
    protocol, transport = _connect()
    for _ in range(3):
        await asyncio.sleep(TIMEOUT_S * 0.6)
        protocol.data_received(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        assert not transport.closed
    assert len(transport.writes) == 3
    protocol.data_received(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await asyncio.sleep(TIMEOUT_S * 0.6)
    assert not transport.closed  # 1.8 deadlines after the connection, 0.6 after the answer
    await asyncio.sleep(TIMEOUT_S * 0.7)
    assert transport.closed
    assert transport.writes[-1].startswith(b"HTTP/1.1 408 ")
    protocol.connection_lost(None)


async def test_a_request_in_progress_is_not_cut_by_the_head_deadline() -> None:
    """A body still arriving past the head deadline: the head came, so no 408 (the body has
    its own deadline, in the app); the answer goes out once the body is complete."""
    protocol, transport = _connect()
    protocol.data_received(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    await asyncio.sleep(TIMEOUT_S * 1.5)
    assert not transport.closed
    protocol.data_received(b"cd")
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    await asyncio.sleep(TIMEOUT_S * 0.6)
    assert not transport.closed  # the new wait began with that answer
    await asyncio.sleep(TIMEOUT_S * 0.7)
    assert transport.closed
    protocol.connection_lost(None)


async def _answered(protocol: JemHttpToolsProtocol, request: bytes) -> None:
    protocol.data_received(request)
    for _ in range(20):  # the app runs as a task
        await asyncio.sleep(0)


KEEP_ALIVE_S = 0.15  # uvicorn's timeout_keep_alive in the tests below, under TIMEOUT_S


async def test_keep_alive_closes_a_connection_silent_after_a_response() -> None:
    """uvicorn's keep-alive, kept by the head deadline's timer: silent that long after an
    answer, the connection is closed without a word (the timer was set for the longer head
    deadline at the connection, and is moved earlier)."""
    protocol, transport = _connect(KEEP_ALIVE_S)
    await _answered(protocol, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(KEEP_ALIVE_S * 0.6)
    assert not transport.closed
    await asyncio.sleep(KEEP_ALIVE_S * 0.7)
    assert transport.closed
    assert len(transport.writes) == 1  # the answer only
    protocol.connection_lost(None)


async def test_a_head_begun_within_keep_alive_gets_the_head_deadline() -> None:
    """As with uvicorn's keep-alive timer (cancelled by any byte): once the next head has
    begun, the connection waits for the rest until the head deadline, then answers 408."""
    protocol, transport = _connect(KEEP_ALIVE_S)
    await _answered(protocol, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    protocol.data_received(b"GET /ok HTTP/1.1\r\nHo")
    await asyncio.sleep(KEEP_ALIVE_S * 1.5)
    assert not transport.closed
    await asyncio.sleep(TIMEOUT_S)
    assert transport.closed
    assert transport.writes[-1].startswith(b"HTTP/1.1 408 ")
    protocol.connection_lost(None)


async def test_pipelined_requests_are_answered_in_order_and_counted() -> None:
    """What uvicorn's `on_response_complete` did besides its timer: the request count, and a
    pipelined request started once the answer before it ended."""
    protocol, transport = _connect(KEEP_ALIVE_S)
    await _answered(
        protocol,
        b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    assert [w[-1:] for w in transport.writes] == [b"k", b"a", b"b"]
    assert protocol.server_state.total_requests == 2
    await asyncio.sleep(KEEP_ALIVE_S * 1.3)
    assert transport.closed  # then waited as after any answer
    protocol.connection_lost(None)


class _CountingLoop:
    """The running loop, counting the timers set through it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.timers = 0

    def call_at(self, when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        self.timers += 1
        return self.loop.call_at(when, callback, *args)

    def call_later(self, delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        self.timers += 1
        return self.loop.call_later(delay, callback, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)


async def test_one_timer_per_connection_not_per_request() -> None:
    """Keep-alive requests set no timer of their own (uvicorn sets and cancels one per request
    for keep-alive, and the head deadline did the same): the connection's first wait sets one,
    the first answer moves it to the shorter keep-alive deadline, and it stays."""
    config = Config(app=_app, http=JemHttpToolsProtocol, lifespan="off", log_level="critical")
    loop = _CountingLoop(asyncio.get_running_loop())
    protocol = JemHttpToolsProtocol(
        config=config,
        server_state=ServerState(),
        app_state={},
        _loop=loop,  # type: ignore[arg-type]
    )
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    for _ in range(10):
        await _answered(protocol, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(transport.writes) == 10
    assert loop.timers == 2  # the head deadline at the connection, keep-alive after answer 1
    protocol.connection_lost(None)
