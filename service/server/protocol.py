"""uvicorn's h11 protocol with the service's answers where uvicorn has its own.

- uvicorn answers a request h11 cannot parse with a plain-text 400 (also for a header block over
  `JEM_MAX_HEADER_BYTES` that arrives in several reads, which h11 hints as 431). Here it is the
  API's error shape: 400 `bad_request`, or 431 `headers_too_large` as the header middleware
  answers a block that arrives at once.
- uvicorn has no deadline for a request's line and headers: a connection that sends nothing, or
  half a header block, is held as long as the client likes. Here the head must arrive within
  `JEM_HEADER_TIMEOUT_S` of the connection (or of the previous response); otherwise 408
  `header_timeout` (only if some of it came) and the connection is closed.

Selected with `uvicorn.run(http=JemH11Protocol)` (`python -m service` does).
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
import sys
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.errors import error_body
from service.settings import Settings

__all__ = ["JemH11Protocol"]


@functools.cache
def _header_timeout_s() -> float:
    return Settings().header_timeout_s


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


class JemH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes of a request head received since the timer started

    # ---- errors in the API's shape ------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this from its `except h11.RemoteProtocolError`, the error still current
        error = sys.exc_info()[1]
        hint = error.error_status_hint if isinstance(error, h11.RemoteProtocolError) else 400
        if hint == 431:
            limit = self.config.h11_max_incomplete_event_size
            status, code = 431, "headers_too_large"
            message = (
                f"request line and headers are over {limit} bytes (JEM_MAX_HEADER_BYTES): "
                "send fewer or shorter headers"
            )
        else:
            status, code = 400, "bad_request"
            message = f"invalid HTTP/1.1 request ({error or msg})"
        self._cancel_head_timer()
        self.transport.write(_raw_error(status, code, message))
        self.transport.close()

    # ---- a deadline for request heads ---------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_request():
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request
        if not self.transport.is_closing() and not self._in_request():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(_header_timeout_s(), self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._in_request():
            return
        if self._head_bytes:  # a silent connection is closed without a word, as nginx does
            message = (
                f"the request line and headers did not arrive within {_header_timeout_s():g} s "
                "(JEM_HEADER_TIMEOUT_S)"
            )
            self.transport.write(_raw_error(408, "header_timeout", message))
        self.transport.close()
