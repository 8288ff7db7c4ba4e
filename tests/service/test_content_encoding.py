"""Compressed request bodies (`Content-Encoding: gzip` / `deflate`), decompressed as they stream
in with JEM_MAX_BODY_BYTES on the decompressed size; any other encoding is 415. The real
tritonclient.http compression option is in tests/service/v2/test_clients.py."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.content_encoding import SUPPORTED
from tests.service.conftest import Digits, make_settings, png_bytes, serve

pytestmark = pytest.mark.anyio

V1 = "/v1/models/served/predict"
V2 = "/v2/models/served/infer"
LIMIT = 1024 * 1024  # JEM_MAX_BODY_BYTES here
GZIP_JSON = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # the zlib format, as RFC 9110 and tritonclient mean it
    "raw-deflate": raw_deflate,  # sent as "deflate" by some clients
}


def v2_body(u8: np.ndarray) -> bytes:
    tensor = {
        "name": "pixels_uint8",
        "datatype": "UINT8",
        "shape": [len(u8), 8, 8, 1],
        "data": u8.reshape(-1).tolist(),
    }
    return json.dumps({"inputs": [tensor], "outputs": [{"name": "label"}]}).encode()


async def chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):  # one ASGI message each
        yield data[start : start + size]


@pytest.fixture
async def client(store_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(store_root, max_body_bytes=LIMIT)) as c:
        yield c


@pytest.mark.parametrize("encoder", list(ENCODERS))
async def test_compressed_bodies_equal_plain_ones(
    client: httpx.AsyncClient, digits: Digits, encoder: str
) -> None:
    encode = ENCODERS[encoder]
    name = encoder.removeprefix("raw-")
    u8 = digits.test_u8[:8]
    plain = await client.post(V2, content=v2_body(u8))
    assert plain.status_code == 200, plain.text
    for streamed in (False, True):
        data = encode(v2_body(u8))
        content = chunks(data, 64) if streamed else data
        r = await client.post(V2, content=content, headers={"Content-Encoding": name})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"] == plain.json()["outputs"]
    # /v1 predict: JSON and multipart bodies alike
    as_json = json.dumps({"pixels": u8.tolist(), "pixel_format": "uint8"}).encode()
    v1_plain = await client.post(V1, content=as_json, headers={"Content-Type": "application/json"})
    v1 = await client.post(
        V1,
        content=encode(as_json),
        headers={"Content-Type": "application/json", "Content-Encoding": name},
    )
    assert v1.status_code == 200, v1.text
    labels = [p["label"] for p in v1.json()["predictions"]]
    assert labels == [p["label"] for p in v1_plain.json()["predictions"]]
    request = client.build_request("POST", V1, files=[("files", ("0.png", png_bytes(u8[0])))])
    multipart = request.read()
    r = await client.post(
        V1,
        content=encode(multipart),
        headers={"Content-Type": request.headers["content-type"], "Content-Encoding": name},
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["label"] == labels[0]


@pytest.mark.parametrize("path", [V1, V2])
async def test_a_compression_bomb_is_413_without_inflating_it(
    client: httpx.AsyncClient, path: str
) -> None:
    """256 MiB of zeros in 255 KiB of gzip, streamed: refused once the inflated size passes the
    limit (1 MiB), holding a few times that at most."""
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(block) for _ in range(256)) + compressor.flush()
    assert len(bomb) < 300 * 1024
    tracemalloc.start()
    try:
        r = await client.post(path, content=chunks(bomb), headers=GZIP_JSON)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413, r.text
    assert peak < 16 * LIMIT, peak
    message = r.json()["error"] if path == V2 else r.json()["error"]["message"]
    assert "once decompressed" in message
    assert "JEM_MAX_BODY_BYTES" in message


async def test_the_limit_is_on_the_decompressed_size(client: httpx.AsyncClient) -> None:
    over = json.dumps({"pixels": [[[0] * 8] * 8], "pad": "x" * LIMIT}).encode()
    r = await client.post(V1, content=gzip.compress(over), headers=GZIP_JSON)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("path", [V1, V2])
@pytest.mark.parametrize("encoding", ["br", "compress", "zstd", "gzip, br", "x-unknown"])
async def test_other_encodings_are_415_naming_the_supported_ones(
    client: httpx.AsyncClient, path: str, encoding: str
) -> None:
    r = await client.post(path, content=b"{}", headers={"Content-Encoding": encoding})
    assert r.status_code == 415, r.text
    message = r.json()["error"] if path == V2 else r.json()["error"]["message"]
    if path == V1:
        assert r.json()["error"]["code"] == "unsupported_media_type"
    for supported in SUPPORTED:
        assert supported in message
    assert r.headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("path", [V1, V2])
async def test_identity_is_no_encoding(
    client: httpx.AsyncClient, digits: Digits, path: str
) -> None:
    body = (
        v2_body(digits.test_u8[:1])
        if path == V2
        else json.dumps({"pixels": digits.test_u8[:1].tolist(), "pixel_format": "uint8"}).encode()
    )
    headers = {"Content-Encoding": "identity", "Content-Type": "application/json"}
    r = await client.post(path, content=body, headers=headers)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", [V1, V2])
async def test_corrupt_or_truncated_data_is_400(
    client: httpx.AsyncClient, digits: Digits, path: str
) -> None:
    whole = gzip.compress(v2_body(digits.test_u8[:4]))
    for data, words in (
        (b"not gzip at all", "not valid gzip"),
        (whole[: len(whole) // 2], "truncated"),
        (whole + b"junk", "not valid gzip"),
    ):
        r = await client.post(path, content=data, headers=GZIP_JSON)
        assert r.status_code == 400, r.text
        message = r.json()["error"] if path == V2 else r.json()["error"]["message"]
        assert words in message, message
