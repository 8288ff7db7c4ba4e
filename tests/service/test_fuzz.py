"""Nothing a client sends produces a 500: mangled image bytes and odd JSON, seeded."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import Digits

pytestmark = pytest.mark.anyio
SEED = 0
PREDICT = "/v1/models/served/predict"


def encoded(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def mangle(data: bytes, rng: np.random.Generator) -> bytes:
    arr = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:  # flip some bytes
        for i in rng.integers(0, len(arr), size=int(rng.integers(1, 8))):
            arr[i] = int(rng.integers(256))
    elif kind == 1:  # truncate
        arr = arr[: int(rng.integers(1, len(arr)))]
    elif kind == 2:  # splice in garbage
        at = int(rng.integers(len(arr)))
        arr[at:at] = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:  # change a header field: width/height bytes live early in every format
        i = int(rng.integers(0, min(32, len(arr))))
        arr[i] = 255
    return bytes(arr)


async def test_mangled_images_get_4xx_or_200(client: httpx.AsyncClient, digits: Digits) -> None:
    rng = np.random.default_rng(SEED)
    bases = [encoded(digits.test_u8[0], f) for f in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")]
    statuses = []
    for i in range(180):
        data = mangle(bases[i % len(bases)], rng)
        r = await client.post(PREDICT, files=[("files", ("x", data, "application/octet-stream"))])
        statuses.append(r.status_code)
        assert r.status_code == 200 or 400 <= r.status_code < 500, (i, r.text)
        assert "error" in r.json() or "predictions" in r.json()
    assert any(s >= 400 for s in statuses)
    ok = await client.post(PREDICT, files=[("files", ("x.png", bases[0], "image/png"))])
    assert ok.status_code == 200


ODD_VALUES: list[object] = [
    None, True, 0, -1, 1e308, "x", "", [], {}, [[]], [[[]]], [None], ["a"], [[1, [2]]],
    {"a": 1}, [float(2**70)], "data:image/png;base64,", base64.b64encode(b"\x89PNG").decode(),
]  # fmt: skip


async def test_odd_json_gets_4xx(client: httpx.AsyncClient) -> None:
    rng = np.random.default_rng(SEED)
    keys = ["images", "pixels", "pixel_format", "other"]
    for _ in range(150):
        body = {
            str(keys[int(k)]): ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
            for k in rng.integers(0, len(keys), size=int(rng.integers(0, 3)))
        }
        paths = [PREDICT, "/v1/models/served/ood"]
        if body:  # an empty body is a valid generate request (all defaults)
            paths.append("/v1/models/served/generate")
        for path in paths:
            r = await client.post(
                path, content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert r.status_code == 200 or 400 <= r.status_code < 500, (path, body, r.text)
            if r.status_code != 200:
                assert set(r.json()["error"]) == {"code", "message"}
