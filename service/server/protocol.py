"""uvicorn's httptools protocol with the limits and answers the service needs.

httptools (llhttp, in C) parses a request for a fraction of the CPU that h11 (pure Python)
takes (docs/benchmarks-peers.md), but uvicorn's protocol around it has neither a cap on the
request head nor a deadline for it, and answers parse errors in plain text. Here:

- The request line and headers are capped at `JEM_MAX_HEADER_BYTES`: a head still incomplete
  once more bytes than that arrived for it gets 431 `headers_too_large`, and the connection
  is closed (a head that arrives complete in one read is measured by the app's
  `HeaderLimitMiddleware`, which answers the same 431).
- A request httptools cannot parse (bad request line, bad `Content-Length`, ...) gets 400
  `bad_request` in the API's error shape, and the connection is closed.
- The head must arrive within `JEM_HEADER_TIMEOUT_S` of the connection (or of the previous
  response); otherwise 408 `header_timeout` (only if some of it came) and the connection is
  closed. uvicorn itself waits as long as the client likes.
- Both waits between requests, that deadline and uvicorn's keep-alive (`timeout_keep_alive`: a
  connection silent that long after a response is closed), are kept by one timer per
  connection, moved on when it fires early, rather than by uvicorn's timer and this deadline's,
  each set and cancelled for every request (docs/benchmarks-peers.md, eighth part).
- A response's head goes out with its body's first bytes, in one write: uvicorn writes the head
  as soon as the app starts the response, then the body: two `send` system calls and two TCP
  segments for every small answer where one does (docs/benchmarks-peers.md, "Server CPU per
  request": one socket write per request instead of two, about 0.01 ms less system CPU).

Selected with `uvicorn.Config(http=JemHttpToolsProtocol)` (`python -m service` does).
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from service.errors import error_body
from service.settings import Settings

__all__ = ["JemHttpToolsProtocol"]

# uvloop's timers and `loop.time()` count whole milliseconds: a deadline less than that ahead
# when the timer fires counts as reached (set again, the timer would fire at once, and again)
_CLOCK_S = 0.001


@functools.cache
def _limits() -> tuple[int, float]:
    """(JEM_MAX_HEADER_BYTES, JEM_HEADER_TIMEOUT_S), read once per process."""
    settings = Settings()
    return settings.max_header_bytes, settings.header_timeout_s


def _raw_error(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection, in the error shape."""
    body = json.dumps(error_body(code, message)).encode()
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _HeadWithBody:
    """A response's transport that holds the head back until the body's first bytes (or the
    end of the response, or a close), then writes both at once. Everything else: the socket's."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.hold_next = False  # set while the cycle writes the head
        self.held = b""

    def write(self, data: bytes) -> None:
        if self.hold_next:
            self.hold_next = False
            self.held = data
            return
        if self.held:
            data, self.held = self.held + data, b""
        self.transport.write(data)

    def flush(self) -> None:
        if self.held:
            self.transport.write(self.held)
            self.held = b""

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _Cycle(RequestResponseCycle):
    """uvicorn's request/response cycle, writing a response's head together with its body."""

    transport: _HeadWithBody  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.transport.hold_next = True
            try:
                await super().send(message)
            finally:
                self.transport.hold_next = False
            return
        try:
            await super().send(message)
        finally:
            if self.response_complete or self.transport.is_closing():
                self.transport.flush()  # a HEAD answer's head (no body bytes are written)


class JemHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._max_head_bytes, self._head_timeout_s = _limits()
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_since = 0.0  # loop time the current wait for a head began
        self._silent_s = self._head_timeout_s  # how long that wait may stay without a byte
        self._awaiting_head = True  # from the connection, or a message's end, to its headers
        self._head_bytes = 0  # bytes received while awaiting the current head

    # ---- errors in the API's shape, and the cap on request heads -----------------------------

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._cancel_head_timer()
        self.transport.write(_raw_error(status, code, message))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # a request httptools cannot parse (data_received below; uvicorn's own calls it too)
        self._refuse(400, "bad_request", f"invalid HTTP/1.1 request ({msg})")

    def data_received(self, data: bytes) -> None:
        # (no `_unset_keepalive_if_required()`: uvicorn's keep-alive timer is never set here,
        # the wait for the next head keeps its deadline: on_response_complete below)
        if self._awaiting_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.send_400_response(str(exc) or "unparsable")
            return
        except httptools.HttpParserUpgrade:  # as uvicorn's (no WebSocket route is served)
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.transport.is_closing():
            return
        if self._awaiting_head and self._head_bytes > self._max_head_bytes:
            self._refuse(
                431,
                "headers_too_large",
                f"request line and headers are over {self._max_head_bytes} bytes "
                "(JEM_MAX_HEADER_BYTES): send fewer or shorter headers",
            )

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        super().on_message_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # uvicorn builds the cycle itself (on_headers_complete, from its own class) and hands
        # it here, before its task first runs: it becomes a _Cycle (a subclass that only
        # overrides send) with a transport that holds the head. uvicorn's private hook:
        # tests/service/test_protocol_writes.py fails if a release renames or drops it.
        cycle.__class__ = _Cycle
        cycle.transport = _HeadWithBody(cycle.transport)  # type: ignore[assignment]
        super()._start_asgi_task(cycle, app)

    # ---- the wait between requests: a deadline for request heads, and keep-alive ------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head(self._head_timeout_s)

    def on_response_complete(self) -> None:
        # uvicorn's own (its 0.54 source), less its keep-alive timer: that was a `call_later`
        # when each response ended and a `cancel` when the next request's first bytes came; the
        # wait below closes a connection silent for `timeout_keep_alive` the same way.
        # tests/service/test_protocol_writes.py covers what it does (keep-alive, pipelining).
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # a pipelined request waiting for this response to end
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._await_head(min(self.timeout_keep_alive, self._head_timeout_s))

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _await_head(self, silent_s: float) -> None:
        """A wait for a request head begins: the connection is closed if no byte comes within
        `silent_s`, or if the head is not complete within `JEM_HEADER_TIMEOUT_S` (408).

        One timer per connection, not one per request: it is set for the first wait and stays
        while it is due no later than this wait's first deadline (moved earlier only when the
        keep-alive after a response is shorter than the head deadline it was set for); when it
        fires during a request, it is dropped and the next wait sets it again, and when it
        fires before the current wait's deadline (the wait began after it was set, or bytes
        came and the longer deadline applies) it is set for that deadline."""
        self._head_since = now = self.loop.time()
        self._silent_s = silent_s
        timer = self._head_timer
        if timer is None or timer.when() - (now + silent_s) > _CLOCK_S:
            if timer is not None:
                timer.cancel()
            self._head_timer = self.loop.call_at(now + silent_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._in_request():
            return  # the response's end begins the next wait (on_response_complete)
        deadline = self._head_since + (self._head_timeout_s if self._head_bytes else self._silent_s)
        if deadline - self.loop.time() > _CLOCK_S:
            self._head_timer = self.loop.call_at(deadline, self._head_timed_out)
            return
        if self._head_bytes:  # a silent connection is closed without a word, as nginx does
            message = (
                f"the request line and headers did not arrive within {self._head_timeout_s:g} "
                "s (JEM_HEADER_TIMEOUT_S)"
            )
            self.transport.write(_raw_error(408, "header_timeout", message))
        self.transport.close()
