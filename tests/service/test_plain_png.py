"""The plain-PNG path (service/plain_png.py) gives Pillow's pixels, and leaves every other file,
malformed ones included, to Pillow (so errors and other images keep their behaviour)."""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from jem import InputSpec
from jem.imaging import to_pixels
from service.errors import CorruptImage
from service.images import decode_image
from service.plain_png import plain_png_pixels

SEED = 0  # the random pixels below


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _filtered(pixels: np.ndarray, filters: Sequence[int], bpp: int) -> bytes:
    """Lines filtered as the PNG specification defines each type (section 9.2)."""
    rows = pixels.reshape(pixels.shape[0], -1).astype(np.int64)
    out = bytearray()
    for y, kind in enumerate(filters):
        x, up = rows[y], rows[y - 1] if y else np.zeros_like(rows[y])
        a = np.concatenate([np.zeros(bpp, np.int64), x[:-bpp]])
        c = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        p = a + up - c
        pa, pb, pc = np.abs(p - a), np.abs(p - up), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, up, c))
        predicted = [0 * x, a, up, (a + up) // 2, paeth][kind]
        out += bytes([kind]) + ((x - predicted) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def _png(
    pixels: np.ndarray,
    filters: Sequence[int] | None = None,
    *,
    idat_parts: int = 1,
    before_idat: Sequence[bytes] = (),
    color_type: int | None = None,
    ihdr_tail: bytes = b"\x00\x00\x00",
    stream: bytes | None = None,
    tail: bytes = b"",
) -> bytes:
    height, width = pixels.shape[:2]
    bpp = 1 if pixels.ndim == 2 else pixels.shape[2]
    kind = color_type if color_type is not None else {1: 0, 3: 2, 4: 6}[bpp]
    filters = filters if filters is not None else [0] * height
    data = stream if stream is not None else zlib.compress(_filtered(pixels, filters, bpp))
    cuts = np.linspace(0, len(data), idat_parts + 1).astype(int)
    header = struct.pack(">IIBB", width, height, 8, kind) + ihdr_tail
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            *before_idat,
            *(_chunk(b"IDAT", data[s:e]) for s, e in itertools.pairwise(cuts)),
            _chunk(b"IEND", b""),
            tail,
        ]
    )


def _pillow(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("idat_parts", [1, 3])
def test_every_filter_type_gives_pillows_pixels(channels: int, idat_parts: int) -> None:
    rng = np.random.default_rng(SEED)
    shape = (10, 7) if channels == 1 else (10, 7, 3)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    pixels[3:6] = 255  # runs that wrap past 255 under Sub / Up / Average / Paeth
    for filters in ([0, 1, 2, 3, 4] * 2, [4, 3, 2, 1, 0] * 2, [2] * 10, [4] * 10, [3] * 10):
        data = _png(pixels, filters, idat_parts=idat_parts)
        got = plain_png_pixels(data, 7, 10, channels)
        assert got is not None
        assert got.dtype == np.uint8
        assert got.flags.writeable
        np.testing.assert_array_equal(got, _pillow(data))
        np.testing.assert_array_equal(got, pixels)


def test_every_digit_as_pillow_saves_it_decodes_as_before() -> None:
    """The data set's 1,797 digits saved by Pillow (its own filter choice per line), through
    `decode_image` for a plain and an inverting spec: the array Pillow + `to_pixels` gives."""
    images = (load_digits(return_X_y=True)[0] * 255 / 16).round().astype(np.uint8)
    specs = [
        InputSpec(channels=1, height=8, width=8, color_mode="L", normalization="digits-v1"),
        InputSpec(channels=1, height=8, width=8, color_mode="L", invert=True),
    ]
    kinds = set()
    for flat in images:
        buffer = io.BytesIO()
        Image.fromarray(flat.reshape(8, 8)).save(buffer, format="PNG")
        data = buffer.getvalue()
        assert plain_png_pixels(data, 8, 8, 1) is not None
        raw = zlib.decompress(data[41 : 41 + int.from_bytes(data[33:37], "big")])
        kinds |= {raw[i * 9] for i in range(8)}
        for spec in specs:
            want = to_pixels(Image.open(io.BytesIO(data)), spec)[:, :, 0]
            got = decode_image(data, spec, max_pixels=1_000_000)
            assert got.shape == want.shape
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    assert kinds >= {0, 1, 2, 4}  # Pillow's choices covered Sub, Up and Paeth lines


def test_rgb_decodes_as_before() -> None:
    rng = np.random.default_rng(SEED)
    pixels = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    spec = InputSpec(channels=3, height=6, width=5, color_mode="RGB")
    np.testing.assert_array_equal(
        decode_image(buffer.getvalue(), spec, max_pixels=1_000_000), pixels
    )


PIXELS = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
GOOD = _png(PIXELS, [0, 1, 2, 3, 4, 0, 1, 2])
STREAM = zlib.compress(_filtered(PIXELS, [0] * 8, 1))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_png(np.zeros((8, 9), np.uint8)), id="another size"),
        pytest.param(_png(np.zeros((8, 8, 3), np.uint8)), id="rgb for a grey model"),
        pytest.param(_png(np.zeros((8, 8, 4), np.uint8)), id="rgba"),
        pytest.param(_png(PIXELS, color_type=3), id="palette colour type"),
        pytest.param(_png(PIXELS, ihdr_tail=b"\x00\x00\x01"), id="interlaced"),
        pytest.param(_png(PIXELS, before_idat=[_chunk(b"tRNS", b"\x00\x00")]), id="tRNS"),
        pytest.param(_png(PIXELS, before_idat=[_chunk(b"gAMA", b"\x00\x00\xb1\x8f")]), id="gAMA"),
        pytest.param(_png(PIXELS, before_idat=[_chunk(b"tEXt", b"a\x00b")]), id="text chunk"),
        pytest.param(GOOD[:-5] + b"\x00" + GOOD[-4:], id="bad IEND CRC"),
        pytest.param(GOOD[:45] + bytes([GOOD[45] ^ 1]) + GOOD[46:], id="flipped IDAT bit"),
        pytest.param(GOOD[:-12], id="no IEND"),
        pytest.param(GOOD + b"\x00", id="bytes after IEND"),
        pytest.param(_png(PIXELS, stream=STREAM[:-6]), id="stream cut short"),
        pytest.param(_png(PIXELS, stream=STREAM + b"\x00"), id="bytes after the stream"),
        pytest.param(
            _png(PIXELS, stream=zlib.compress(_filtered(PIXELS, [0] * 8, 1) + b"\x00")),
            id="a byte too many",
        ),
        pytest.param(_png(PIXELS, stream=zlib.compress(bytes([5]) + bytes(71))), id="filter 5"),
        pytest.param(_png(PIXELS, stream=b"not zlib"), id="not zlib"),
        pytest.param(b"GIF89a" + GOOD[6:], id="not a PNG"),
        pytest.param(GOOD[:20], id="truncated header"),
    ],
)
def test_anything_else_is_left_to_pillow(data: bytes) -> None:
    assert plain_png_pixels(GOOD, 8, 8, 1) is not None  # the file these are made from
    assert plain_png_pixels(data, 8, 8, 1) is None


def test_corrupt_files_keep_their_errors() -> None:
    spec = InputSpec(channels=1, height=8, width=8, color_mode="L")
    flipped = GOOD[:45] + bytes([GOOD[45] ^ 1]) + GOOD[46:]
    with pytest.raises(CorruptImage, match="truncated or corrupt PNG file"):
        decode_image(flipped, spec, max_pixels=1_000_000)
    with pytest.raises(CorruptImage):
        decode_image(_png(PIXELS, stream=STREAM[:-6]), spec, max_pixels=1_000_000)


def test_large_images_and_pixel_limits_go_to_pillow() -> None:
    big = np.zeros((40, 40), np.uint8)  # 1,600 pixel bytes: past MAX_PIXEL_BYTES
    assert plain_png_pixels(_png(big), 40, 40, 1) is None
    spec = InputSpec(channels=1, height=8, width=8, color_mode="L")
    with pytest.raises(Exception, match="JEM_MAX_IMAGE_PIXELS"):
        decode_image(GOOD, spec, max_pixels=63)
