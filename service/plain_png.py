"""Small plain PNG uploads at the model's size, decoded without Pillow's per-file machinery.

A digit upload is a ~125-byte PNG of 8x8 grey pixels; Pillow spends ~50 us on it (opening,
plugin lookup, `ImageFile.load`, `to_pixels`), almost all of it Python code around 64 bytes of
pixels. For the one kind of file whose pixels need nothing but inflating and unfiltering, this
module does exactly that (PNG specification, sections 7-9; W3C PNG 3rd edition): the chunks
are IHDR, one or more IDAT and IEND and nothing else (no palette, transparency, colour profile,
EXIF orientation, gamma or text chunk that `jem.imaging.to_pixels` or Pillow would act on),
8-bit grey or RGB to match the model's channels, not interlaced, exactly the model's width and
height (so `to_pixels` would neither normalise nor resize), every chunk's CRC right, the zlib
stream complete with exactly one filter byte and one row of pixels per line and nothing after
it. For such a file the pixels are defined by the specification, so they are Pillow's pixels;
`tests/service/test_plain_png.py` checks that against Pillow for every filter type, several
IDAT chunks, grey and RGB, and every digit of the data set.

Anything else, including every malformed file, returns None and is decoded by Pillow as before
(`service.images.decode_image`), so every error and every other image keeps its behaviour.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = ["MAX_PIXEL_BYTES", "plain_png_pixels"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 3: 2}  # channels -> PNG colour type: greyscale, truecolour
# Unfiltering the Average and Paeth filters runs byte by byte in Python: past this many pixel
# bytes (a 16x16 RGB image is 768) Pillow's C decoder is the cheaper one.
MAX_PIXEL_BYTES = 1024


def _chunks(data: bytes) -> list[tuple[bytes, memoryview]] | None:
    """(type, payload) of every chunk up to IEND, which must end the file; None if a length
    runs past the end or a CRC is wrong."""
    view, pos, end, chunks = memoryview(data), 8, len(data), []
    while pos + 12 <= end:
        length = int.from_bytes(view[pos : pos + 4], "big")
        stop = pos + 12 + length
        if stop > end or zlib.crc32(view[pos + 4 : stop - 4]) != int.from_bytes(
            view[stop - 4 : stop], "big"
        ):
            return None
        kind = bytes(view[pos + 4 : pos + 8])
        chunks.append((kind, view[pos + 8 : stop - 4]))
        if kind == b"IEND":
            return chunks if stop == end else None
        pos = stop
    return None


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> bytearray | None:
    """`height` filtered lines (a filter-type byte, then `stride` bytes) -> the pixel bytes;
    None for a filter type the specification does not define. Plain Python: for lines of a
    few dozen bytes, cheaper than a numpy call per line."""
    out = bytearray(height * stride)
    zeros = bytes(stride)
    for y in range(height):
        start, at = y * (stride + 1) + 1, y * stride
        kind, line = raw[start - 1], raw[start : start + stride]
        up = out[at - stride : at] if y else zeros  # the line above, decoded
        if kind == 0:
            out[at : at + stride] = line
        elif kind == 2:  # Up
            out[at : at + stride] = bytes([(x + b) & 0xFF for x, b in zip(line, up, strict=True)])
        elif kind in (1, 3, 4):  # Sub, Average, Paeth: each byte needs the one decoded before
            cur = bytearray(line)
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                if kind == 1:
                    cur[i] = (cur[i] + a) & 0xFF
                elif kind == 3:
                    cur[i] = (cur[i] + ((a + up[i]) >> 1)) & 0xFF
                else:
                    b, c = up[i], (up[i - bpp] if i >= bpp else 0)
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    cur[i] = (
                        cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)
                    ) & 0xFF
            out[at : at + stride] = cur
        else:
            return None
    return out


def plain_png_pixels(
    data: bytes, width: int, height: int, channels: int
) -> np.ndarray[Any, Any] | None:
    """The uint8 pixels, (height, width) for 1 channel or (height, width, 3), of a plain PNG
    of exactly that size (module docstring); None for any other file."""
    color_type = _COLOR_TYPE.get(channels)
    stride = width * channels
    if color_type is None or stride * height > MAX_PIXEL_BYTES:
        return None
    header = b"".join(
        (width.to_bytes(4, "big"), height.to_bytes(4, "big"), bytes((8, color_type, 0, 0, 0)))
    )
    # the signature and IHDR's length, type and fields first: any other file stops here
    if data[:29] != _SIGNATURE + b"\x00\x00\x00\x0dIHDR" + header:
        return None
    chunks = _chunks(data)
    if chunks is None or len(chunks) < 3 or len(chunks[-1][1]):  # no IDAT; IEND with data
        return None
    if any(kind != b"IDAT" for kind, _ in chunks[1:-1]):
        return None
    expected = height * (stride + 1)
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(b"".join(payload for _, payload in chunks[1:-1]), expected + 1)
    except zlib.error:
        return None
    if len(raw) != expected or not inflate.eof or inflate.unused_data:
        return None
    pixels = _unfilter(raw, height, stride, channels)
    if pixels is None:
        return None
    array = np.frombuffer(pixels, dtype=np.uint8)  # writable: it owns a bytearray
    return array.reshape(height, width) if channels == 1 else array.reshape(height, width, 3)
