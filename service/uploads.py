"""A multipart/form-data body's file parts, as bytes: python-multipart's parser, kept lean.

Starlette's `Request.form()` wraps every file part in an `UploadFile` over a
`SpooledTemporaryFile`, with its headers parsed into a `Headers` object, then copies the bytes
out again: a tenth of a 64-image request's CPU time went there (py-spy,
docs/benchmarks-peers.md). Here the same parser (python-multipart's `MultipartParser`) hands
each part's bytes straight to a list; the body is already capped by `BodyLimitMiddleware`
(JEM_MAX_BODY_BYTES), so nothing needs spooling to disk.
"""

from __future__ import annotations

import re

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from service.errors import InvalidInput, TooManyImages

__all__ = ["read_files"]

# The headers every HTTP client writes (browsers, curl, requests, httpx, aiohttp): read by one
# regular expression each. Anything else (escapes, other spellings, more parameters) goes through
# python-multipart's `parse_options_header`, which gives the same values for these plain forms
# (tests/service/test_uploads.py) at ~6 us a call, once per part.
_PLAIN_DISPOSITION = re.compile(rb'form-data; name="([^"\\]*)"(?:; filename="([^"\\]*)")?')
_PLAIN_MULTIPART = re.compile(r"multipart/form-data; boundary=([0-9A-Za-z'()+_,./:=?-]+)")


def _name_and_filename(disposition: bytes) -> tuple[bytes | None, bytes | None]:
    """A part's Content-Disposition `name` and `filename` (None where absent)."""
    plain = _PLAIN_DISPOSITION.fullmatch(disposition)
    if plain is not None:
        return plain.group(1), plain.group(2)
    _, options = parse_options_header(disposition)
    return options.get(b"name"), options.get(b"filename")


def _boundary(content_type: str) -> bytes | None:
    plain = _PLAIN_MULTIPART.fullmatch(content_type)
    if plain is not None:
        return plain.group(1).encode("latin-1")
    _, params = parse_options_header(content_type)
    return params.get(b"boundary")


class _Parts:
    """python-multipart's callbacks: collects the file parts, counts the other fields."""

    def __init__(self, max_files: int, max_fields: int, max_field_bytes: int) -> None:
        self.max_files = max_files
        self.max_fields = max_fields
        self.max_field_bytes = max_field_bytes
        self.files: list[tuple[str, bytes]] = []
        self.fields = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._label: str | None = None  # "field[filename]" of a file part; None for a field
        self._chunks: list[bytes] = []
        self._size = 0

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._chunks = []
        self._size = 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        name, filename = _name_and_filename(self._disposition)
        if name is None:
            raise InvalidInput(
                "multipart body: a part's Content-Disposition header has no 'name'; "
                "send images as file parts ('files')"
            )
        if filename is None:
            self._label = None
            self.fields += 1
            if self.fields > self.max_fields:
                raise InvalidInput(
                    f"multipart body: more than {self.max_fields} form fields "
                    "(JEM_MAX_IMAGES_PER_REQUEST); send images as file parts ('files')"
                )
            return
        if len(self.files) >= self.max_files:
            raise TooManyImages(
                f"more than {self.max_files} files in one request (JEM_MAX_IMAGES_PER_REQUEST): "
                "split them over several requests"
            )
        field = name.decode("utf-8", "replace")
        self._label = f"{field}[{filename.decode('utf-8', 'replace') or len(self.files)}]"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._label is None and self._size > self.max_field_bytes:
            raise InvalidInput(
                f"multipart body: a form field over {self.max_field_bytes // 1024} KiB; "
                "send images as file parts ('files')"
            )
        self._chunks.append(data[start:end])

    def on_part_end(self) -> None:
        if self._label is not None:
            self.files.append((self._label, b"".join(self._chunks)))
        self._chunks = []


async def read_files(
    request: Request, *, max_files: int, max_fields: int, max_field_bytes: int = 1024 * 1024
) -> list[tuple[str, bytes]]:
    """The (label, bytes) of every file part in the request's multipart body, in order.

    `label` is "field[filename]" (the part's index when it has an empty filename). Raises
    `TooManyImages` beyond `max_files` file parts, `InvalidInput` (422) for a body that is not
    valid multipart, more than `max_fields` other fields, a field over `max_field_bytes`, or no
    file at all.
    """
    boundary = _boundary(request.headers.get("content-type", ""))
    if not boundary:
        raise InvalidInput("multipart body: the Content-Type header has no boundary")
    parts = _Parts(max_files, max_fields, max_field_bytes)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": parts.on_part_begin,
            "on_part_data": parts.on_part_data,
            "on_part_end": parts.on_part_end,
            "on_header_field": parts.on_header_field,
            "on_header_value": parts.on_header_value,
            "on_header_end": parts.on_header_end,
            "on_headers_finished": parts.on_headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidInput(f"multipart body: invalid multipart data ({exc})") from None
    if not parts.files:
        raise InvalidInput("multipart body holds no files; send images as file parts ('files')")
    return parts.files
