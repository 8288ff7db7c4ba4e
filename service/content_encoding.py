"""Pure ASGI middleware for compressed request bodies: `Content-Encoding: gzip` or `deflate`
(what `tritonclient.http`'s `request_compression_algorithm` sends), decompressed as the body
streams in, with JEM_MAX_BODY_BYTES applied to the DECOMPRESSED size.

Each chunk is inflated with `zlib` at most up to the bytes still allowed (plus one, to notice
going over), so a compression bomb (a few KiB that inflate to gigabytes) is refused with 413
having held at most the limit, never inflated whole. The compressed bytes are counted (and
timed) by `BodyLimitMiddleware`, outside this one. Any other encoding is 415 with a body that
names the supported ones (and `Accept-Encoding`, RFC 7694); corrupt or truncated data is 400.
Errors have the API's shape (/v2's own on /v2 paths).
"""

from __future__ import annotations

import zlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.asgi_helpers import header, is_v2, send_error
from service.errors import BodyTooLarge, InvalidInput, UnsupportedMediaType

__all__ = ["SUPPORTED", "DecompressionMiddleware"]

SUPPORTED = ("gzip", "deflate")  # besides `identity` (no encoding)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _Inflater:
    """Incremental gzip / deflate decoding of one body, never producing more than `limit`
    bytes in all. `deflate` is the zlib format (RFC 9110); a raw deflate stream, as some
    clients send, is recognised by its first two bytes. Concatenated gzip members are read
    one after another, as `gzip.decompress` does."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.produced = 0
        self._decoder: zlib._Decompress | None = None
        self._ended = False  # the current member's end was seen

    def _new_decoder(self, first: bytes) -> zlib._Decompress:
        if self.encoding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        zlib_header = (
            len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        )
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            if self._decoder is None or (self._ended and self.encoding == "gzip"):
                self._decoder, self._ended = self._new_decoder(data), False
            elif self._ended:
                raise InvalidInput(f"data after the end of the {self.encoding} body")
            decoder = self._decoder
            room = self.limit - self.produced
            try:
                chunk = decoder.decompress(data, room + 1)  # max_length 0 would mean no limit
            except zlib.error as exc:
                raise InvalidInput(
                    f"the body is not valid {self.encoding} data ({exc}), as its "
                    f"Content-Encoding says"
                ) from None
            self.produced += len(chunk)
            if self.produced > self.limit:
                raise BodyTooLarge(
                    f"request body is more than {self.limit} bytes once decompressed "
                    f"(Content-Encoding: {self.encoding}); the limit is {self.limit} "
                    "(JEM_MAX_BODY_BYTES): send fewer or smaller images per request"
                )
            out.append(chunk)
            self._ended = decoder.eof
            data = decoder.unused_data if decoder.eof else b""
        return b"".join(out)

    def finish(self) -> None:
        if not self._ended:
            raise InvalidInput(
                f"the {self.encoding} body ends before its compressed data does (truncated)"
            )


class DecompressionMiddleware:
    """Hands the app the decompressed body of a POST/PUT/PATCH with `Content-Encoding: gzip`
    or `deflate`, without that header or Content-Length; 415 for any other encoding."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        encoding = header(scope, b"content-encoding") if scope["type"] == "http" else None
        if encoding is None or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if not codings:
            await self.app(scope, receive, send)
            return
        if len(codings) > 1 or codings[0] not in SUPPORTED:
            message = (
                f"Content-Encoding {encoding!r} is not supported: send the body uncompressed "
                f"or with Content-Encoding {' or '.join(SUPPORTED)}"
            )
            accept = [(b"accept-encoding", ", ".join(SUPPORTED).encode())]
            await send_error(
                send, 415, UnsupportedMediaType.code, message, accept, protocol_v2=is_v2(scope)
            )
            return
        inflater = _Inflater(codings[0], self.max_bytes)
        refusal: tuple[int, str, str] | None = None
        done = False

        def refuse(status: int, error: InvalidInput | BodyTooLarge) -> None:
            nonlocal refusal
            refusal = (status, error.code, error.message)

        async def inflating_receive() -> Message:
            nonlocal done
            message = await receive()
            if message["type"] != "http.request" or done:
                return message
            try:
                body = inflater.feed(message.get("body", b""))
                if not message.get("more_body", False):
                    done = True
                    inflater.finish()
            except BodyTooLarge as exc:
                refuse(413, exc)
                raise
            except InvalidInput as exc:
                refuse(400, exc)
                raise
            return {**message, "body": body}

        async def guarded_send(message: Message) -> None:
            # as BodyLimitMiddleware: whatever the app made of the failed read, this answer
            if refusal is None:
                await send(message)
            elif message["type"] == "http.response.start":
                await send_error(send, *refusal, protocol_v2=is_v2(scope))

        # in place: the router records the route in this scope, for the access log and metrics
        drop = (b"content-encoding", b"content-length")
        scope["headers"] = [(k, v) for k, v in scope.get("headers", ()) if k not in drop]
        await self.app(scope, inflating_receive, guarded_send)
