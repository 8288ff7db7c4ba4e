"""Hostile inputs the tests make themselves: broken, tricky and oversized images and bodies.

Each builder returns the request (httpx keyword arguments) and what must come back: a 4xx with
the one error shape, or a correct classification of the digit it carries.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["Hostile", "corpus", "exif_rotated", "png_with_header"]


@dataclass(frozen=True)
class Hostile:
    name: str
    request: dict[str, Any]  # keyword arguments for client.post(PREDICT, ...)
    statuses: tuple[int, ...]  # acceptable statuses
    label: int | None = None  # with 200: the label the answer must carry
    codes: tuple[str, ...] = field(default=())  # acceptable error codes with a 4xx


def _files(*blobs: bytes, ctype: str = "application/octet-stream") -> dict[str, Any]:
    return {"files": [("files", (f"{i}.bin", b, ctype)) for i, b in enumerate(blobs)]}


def _json(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


def _encode(image: Image.Image, fmt: str, **save: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_with_header(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR claims width x height 8-bit grey pixels: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = idat or zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    )


def exif_rotated(upright: Image.Image, fmt: str = "PNG") -> bytes:
    """The digit stored rotated by 90 degrees with EXIF orientation 6 ("rotate 90 CW to view")."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(stored, fmt, exif=exif)


def _grey_to_big(pixels: np.ndarray, size: int = 64) -> Image.Image:
    # Upscaled with BOX-compatible nearest blocks so the model's BOX resize recovers the digit.
    return Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST)


def _animated_gif(first: np.ndarray, rng: np.random.Generator) -> bytes:
    frames = [Image.fromarray(first)] + [
        Image.fromarray(rng.integers(0, 256, first.shape, dtype=np.uint8)) for _ in range(4)
    ]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return buffer.getvalue()


def _nested(depth: int) -> str:
    return '{"pixels": ' + "[" * depth + "0" + "]" * depth + "}"


def corpus(digit: np.ndarray, label: int, seed: int = 0) -> list[Hostile]:
    """Every hostile input, built around one upright test digit (8x8 uint8) of class `label`."""
    rng = np.random.default_rng(seed)
    upright = Image.fromarray(digit)
    png = _encode(upright, "PNG")
    jpeg = _encode(_grey_to_big(digit), "JPEG", quality=95)
    bad = (400, 413, 415, 422)
    row = ",".join(["0.5"] * 8)
    image_json = "[" + ",".join(["[" + row + "]"] * 8) + "]"
    alpha = np.zeros((8, 8, 4), dtype=np.uint8)
    alpha[..., :3] = 255  # white ink everywhere; the digit lives in the alpha channel
    alpha[..., 3] = digit
    cmyk = _grey_to_big(digit).convert("RGB").convert("CMYK")
    cases: list[Hostile] = [
        Hostile("zero bytes", _files(b""), (422,), codes=("not_an_image",)),
        Hostile("truncated PNG", _files(png[: len(png) // 2]), (422,), codes=("corrupt_image",)),
        Hostile("PNG cut after header", _files(png[:33]), (422,), codes=("corrupt_image",)),
        Hostile("truncated JPEG", _files(jpeg[: len(jpeg) // 2]), (422,), codes=("corrupt_image",)),
        Hostile("wrong magic bytes", _files(b"\x00" + png[1:]), (422,), codes=("not_an_image",)),
        Hostile("PNG magic, JPEG body", _files(png[:8] + jpeg[8:]), (422,)),
        Hostile("random bytes", _files(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()), bad),
        Hostile("text file", _files(b"hello, not an image", ctype="text/plain"), (422,)),
        Hostile(
            "bomb: 50000x50000 header",
            _files(png_with_header(50_000, 50_000)),
            (413,),
            codes=("image_too_large",),
        ),
        Hostile(
            "bomb: 3000x3000 header (over JEM_MAX_IMAGE_PIXELS)",
            _files(png_with_header(3000, 3000)),
            (413,),
            codes=("image_too_large",),
        ),
        Hostile(
            "bomb: real 4000x4000 zeros PNG",
            _files(_encode(Image.new("L", (4000, 4000)), "PNG", optimize=True)),
            (413,),
            codes=("image_too_large",),
        ),
        Hostile(
            "huge width, small area: 100000x1",
            _files(_encode(Image.new("L", (100_000, 1)), "PNG")),
            (200, *bad),
        ),
        Hostile(
            "huge height, small area: 1x100000",
            _files(_encode(Image.new("L", (1, 100_000)), "PNG")),
            (200, *bad),
        ),
        Hostile("1x1 image", _files(_encode(Image.new("L", (1, 1), 255), "PNG")), (200,)),
        Hostile(
            "16-bit greyscale PNG",
            _files(_encode(Image.fromarray(digit.astype(np.uint16) * 257), "PNG")),
            (200,),
            label=label,
        ),
        Hostile(
            "palette PNG",
            _files(_encode(upright.convert("P", palette=Image.Palette.ADAPTIVE), "PNG")),
            (200,),
            label=label,
        ),
        Hostile("CMYK JPEG", _files(_encode(cmyk, "JPEG", quality=95)), (200,), label=label),
        Hostile(
            "RGBA PNG (digit in alpha)",
            _files(_encode(Image.fromarray(alpha), "PNG")),
            (200,),
            label=label,
        ),
        Hostile(
            "LA PNG (digit in alpha)",
            _files(_encode(Image.fromarray(alpha).convert("LA"), "PNG")),
            (200,),
            label=label,
        ),
        Hostile(  # several frames: no one right image, refused (docs/service.md's table)
            "animated GIF (digit first)",
            _files(_animated_gif(digit, rng)),
            (422,),
            codes=("unsupported_pixels",),
        ),
        Hostile("EXIF-rotated PNG", _files(exif_rotated(upright)), (200,), label=label),
        Hostile(
            "EXIF-rotated JPEG",
            _files(exif_rotated(_grey_to_big(digit), "JPEG")),
            (200,),
            label=label,
        ),
        Hostile(
            "JSON NaN pixels",
            _json('{"pixels": [' + image_json.replace("0.5", "NaN") + "]}"),
            (422,),
        ),
        Hostile(
            "JSON Infinity pixels",
            _json('{"pixels": [' + image_json.replace("0.5", "Infinity") + "]}"),
            (422,),
        ),
        Hostile(
            "JSON 1e400 pixels",
            _json('{"pixels": [' + image_json.replace("0.5", "1e400") + "]}"),
            (422,),
        ),
        Hostile("JSON wrong nesting", _json('{"pixels": [[[' + image_json + "]]]}"), (422,)),
        Hostile("JSON ragged rows", _json('{"pixels": [[[0.5], [0.5, 0.5]]]}'), (422,)),
        Hostile(
            "JSON strings for numbers",
            _json('{"pixels": [' + image_json.replace("0.5", '"0.5"') + "]}"),
            (422,),
        ),
        Hostile(
            "JSON booleans for numbers",
            _json('{"pixels": [' + image_json.replace("0.5", "true") + "]}"),
            (422,),
        ),
        Hostile("JSON object for pixels", _json('{"pixels": {"a": 1}}'), (422,)),
        Hostile("JSON number for images", _json('{"images": 5}'), (422,)),
        Hostile("JSON 10k-deep nesting", _json(_nested(10_000)), (400, 422)),
        Hostile("JSON 10k-deep nesting, bare", _json("[" * 10_000 + "]" * 10_000), (400, 422)),
        Hostile("JSON truncated", _json('{"pixels": [[['), (400, 422)),
        Hostile(
            "JSON not UTF-8",
            {
                "content": b'{"images": ["\xff\xfe"]}',
                "headers": {"content-type": "application/json"},
            },
            (400, 422),
        ),
        Hostile("base64 garbage", _json('{"images": ["!!!not base64!!!"]}'), (422,)),
        Hostile("base64 of zero bytes", _json('{"images": [""]}'), (422,)),
        Hostile(
            "multipart: 300 file parts",
            _files(*([png] * 300)),
            (413, 422),
            codes=("too_many_images", "body_too_large"),
        ),
        Hostile(
            "multipart: 500 form fields",
            {
                "data": {f"f{i}": "x" for i in range(500)},
                "files": [("files", ("0.png", png, "image/png"))],
            },
            (422,),
        ),
        Hostile(
            "multipart: bad boundary",
            {
                "content": b"--nope\r\n\r\n",
                "headers": {"content-type": "multipart/form-data; boundary=other"},
            },
            (400, 422),
        ),
        Hostile(
            "multipart: no boundary",
            {"content": png, "headers": {"content-type": "multipart/form-data"}},
            (400, 422),
        ),
        Hostile("no content type", {"content": png}, (415,)),
        Hostile(
            "content type image/png (raw body)",
            {"content": png, "headers": {"content-type": "image/png"}},
            (415,),
        ),
    ]
    return cases
