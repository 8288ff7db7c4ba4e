"""service.uploads.read_files: a multipart body's file parts, through python-multipart."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request
from starlette.types import Message

from service.errors import InvalidInput, TooManyImages
from service.uploads import read_files


def _request(body: bytes, content_type: str, chunk: int = 7) -> Request:
    """A request whose body arrives in `chunk`-byte pieces (parts split across reads)."""
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages: list[Message] = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
        for i, p in enumerate(pieces)
    ]

    async def receive() -> Message:
        return messages.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", content_type.encode())],
    }
    return Request(scope, receive)


def _multipart(
    files: list[tuple[str, tuple[str, bytes]]], data: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """The body and content type httpx (the client people use) sends for these parts."""
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.read(), request.headers["content-type"]


@pytest.mark.anyio
async def test_file_parts_in_order_with_their_bytes_and_labels() -> None:
    body, ctype = _multipart(
        [("files", ("a.png", b"\x89PNG-one")), ("files", ("b.png", b"two" * 100))], {"note": "x"}
    )
    files = await read_files(_request(body, ctype), max_files=4, max_fields=4)
    assert files == [("files[a.png]", b"\x89PNG-one"), ("files[b.png]", b"two" * 100)]
    unnamed = b'--b\r\nContent-Disposition: form-data; name="f"; filename=""\r\n\r\nx\r\n--b--\r\n'
    files = await read_files(
        _request(unnamed, "multipart/form-data; boundary=b"), max_files=1, max_fields=1
    )
    assert files == [("f[0]", b"x")]


@pytest.mark.anyio
async def test_limits_and_malformed_bodies_are_4xx_errors() -> None:
    body, ctype = _multipart([("files", (f"{i}.png", b"x")) for i in range(3)])
    with pytest.raises(TooManyImages, match="more than 2 files"):
        await read_files(_request(body, ctype), max_files=2, max_fields=2)
    body, ctype = _multipart([("files", ("0.png", b"x"))], {f"f{i}": "v" for i in range(3)})
    with pytest.raises(InvalidInput, match="more than 2 form fields"):
        await read_files(_request(body, ctype), max_files=2, max_fields=2)
    body, ctype = _multipart([("files", ("0.png", b"x"))], {"big": "v" * 2048})
    with pytest.raises(InvalidInput, match="form field over 1 KiB"):
        await read_files(_request(body, ctype), max_files=2, max_fields=2, max_field_bytes=1024)
    only_field = b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n--b--\r\n'
    with pytest.raises(InvalidInput, match="holds no files"):
        await read_files(
            _request(only_field, "multipart/form-data; boundary=b"), max_files=2, max_fields=2
        )
    nameless = b'--b\r\nContent-Disposition: form-data; filename="x.png"\r\n\r\nx\r\n--b--\r\n'
    with pytest.raises(InvalidInput, match="no 'name'"):
        await read_files(
            _request(nameless, "multipart/form-data; boundary=b"), max_files=2, max_fields=2
        )
    with pytest.raises(InvalidInput, match="no boundary"):
        await read_files(_request(b"x", "multipart/form-data"), max_files=2, max_fields=2)
    garbage = b"--b\r\nno header end"
    with pytest.raises(InvalidInput):
        await read_files(
            _request(garbage, "multipart/form-data; boundary=b"), max_files=2, max_fields=2
        )
