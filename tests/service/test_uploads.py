"""service.uploads.read_files: a multipart body's file parts, through `multipart`."""

from __future__ import annotations

import httpx
import pytest
from python_multipart.multipart import parse_options_header
from starlette.requests import Request
from starlette.types import Message

from service.errors import InvalidInput, TooManyImages
from service.uploads import _boundary, read_files


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


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=0b5e9c3a6d1f4e2b",
        "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
        "multipart/form-data; boundary=a=b",
        'multipart/form-data; boundary="quoted boundary"',
        "multipart/form-data; charset=utf-8; boundary=x",
        "Multipart/Form-Data; Boundary=x",
        "multipart/form-data",
        "",
    ],
)
def test_plain_boundaries_read_as_python_multipart_reads_them(content_type: str) -> None:
    assert _boundary(content_type) == parse_options_header(content_type)[1].get(b"boundary")


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 16])
async def test_the_same_parts_however_the_body_is_split(chunk: int) -> None:
    parts = [("files", (f"{i}.png", bytes(range(i, 256)) * 3)) for i in range(3)]
    body, ctype = _multipart(parts)
    expected = [(f"files[{i}.png]", content) for i, (_, (_, content)) in enumerate(parts)]
    files = await read_files(_request(body, ctype, chunk), max_files=3, max_fields=1)
    assert files == expected
    # a line break after the closing boundary (some clients send one) is no part
    files = await read_files(_request(body + b"\r\n", ctype, chunk), max_files=3, max_fields=1)
    assert files == expected


@pytest.mark.anyio
async def test_a_body_cut_short_is_invalid() -> None:
    body, ctype = _multipart([("files", ("0.png", b"x" * 100))])
    with pytest.raises(InvalidInput, match="invalid multipart data"):
        await read_files(_request(body[:-20], ctype), max_files=2, max_fields=2)
