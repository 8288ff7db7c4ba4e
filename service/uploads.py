"""A multipart/form-data body's file parts, as bytes.

Starlette's `Request.form()` wraps every file part in an `UploadFile` over a
`SpooledTemporaryFile`, with its headers parsed into a `Headers` object, then copies the bytes
out again: a tenth of a 64-image request's CPU time went there (py-spy,
docs/benchmarks-peers.md). Here the parts' bytes go straight to a list; the body is already
capped by `BodyLimitMiddleware` (JEM_MAX_BODY_BYTES), so nothing needs spooling to disk.

The parser is `multipart`'s `PushMultipartParser` (the parser Bottle uses): it finds part
headers and boundaries with `bytes.find`, where python-multipart's `MultipartParser` walks every
header byte in Python; 1.0 against 2.3 ms for a 64-PNG body, 13 against 30 us for one PNG
(docs/benchmarks-peers.md, "Multipart"). python-multipart still reads the Content-Type header's
unusual spellings.
"""

from __future__ import annotations

import re

import multipart
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from service.errors import InvalidInput, TooManyImages

__all__ = ["read_files"]

# The Content-Type every HTTP client writes (browsers, curl, requests, httpx, aiohttp): read by
# one regular expression. Anything else (quotes, other parameters, case) goes through
# python-multipart's `parse_options_header` (tests/service/test_uploads.py), at ~6 us a call.
_PLAIN_MULTIPART = re.compile(r"multipart/form-data; boundary=([0-9A-Za-z'()+_,./:=?-]+)")


def _boundary(content_type: str) -> bytes | None:
    plain = _PLAIN_MULTIPART.fullmatch(content_type)
    if plain is not None:
        return plain.group(1).encode("latin-1")
    _, params = parse_options_header(content_type)
    return params.get(b"boundary")


def _has_name(segment: multipart.MultipartSegment) -> bool:
    """Whether the part's Content-Disposition names it (`multipart` reads a missing name as
    ""; RFC 7578 requires one)."""
    for header, value in segment.headerlist:
        if header == "Content-Disposition":
            return b"name" in parse_options_header(value)[1]
    return False


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
    files: list[tuple[str, bytes]] = []
    fields = 0
    label: str | None = None  # "field[filename]" of the file part being read; None for a field
    chunks: list[bytes] = []
    size = 0
    try:
        with multipart.PushMultipartParser(boundary) as parser:  # leaving it checks the end
            async for data in request.stream():
                for event in parser.parse(data):
                    if event is None:  # the part's end
                        if label is not None:
                            files.append((label, b"".join(chunks)))
                        chunks = []
                    elif isinstance(event, bytes):
                        size += len(event)
                        if label is None and size > max_field_bytes:
                            raise InvalidInput(
                                f"multipart body: a form field over {max_field_bytes // 1024} "
                                "KiB; send images as file parts ('files')"
                            )
                        chunks.append(event)
                    else:  # a part's headers
                        size = 0
                        if not event.name and not _has_name(event):
                            raise InvalidInput(
                                "multipart body: a part's Content-Disposition header has no "
                                "'name'; send images as file parts ('files')"
                            )
                        if event.filename is None:
                            label = None
                            fields += 1
                            if fields > max_fields:
                                raise InvalidInput(
                                    f"multipart body: more than {max_fields} form fields "
                                    "(JEM_MAX_IMAGES_PER_REQUEST); send images as file parts "
                                    "('files')"
                                )
                        elif len(files) >= max_files:
                            raise TooManyImages(
                                f"more than {max_files} files in one request "
                                "(JEM_MAX_IMAGES_PER_REQUEST): split them over several requests"
                            )
                        else:
                            label = f"{event.name}[{event.filename or len(files)}]"
    except multipart.MultipartError as exc:
        raise InvalidInput(f"multipart body: invalid multipart data ({exc})") from None
    if not files:
        raise InvalidInput("multipart body holds no files; send images as file parts ('files')")
    return files
