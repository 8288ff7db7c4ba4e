"""Every bad input gets its 4xx in the one error shape, and the service keeps serving."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service._metrics import requests_total
from tests.service.conftest import Digits, make_settings, png_bytes, serve

pytestmark = pytest.mark.anyio

PREDICT = "/v1/models/served/predict"


@pytest.fixture
async def strict(store_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        store_root, max_images_per_request=4, max_body_bytes=64 * 1024, max_image_pixels=4096
    )
    async with serve(settings) as client:
        yield client


def upload(
    data: bytes, name: str = "x.png", ctype: str = "image/png"
) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, ctype))]


def ppm() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PPM")
    return buffer.getvalue()


async def check(response: httpx.Response, status: int, code: str, *needles: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code, body
    for needle in needles:
        assert needle in body["error"]["message"], body


async def test_every_bad_input_gets_its_4xx(strict: httpx.AsyncClient, digits: Digits) -> None:
    png = png_bytes(digits.test_u8[0])
    big = png_bytes(np.zeros((100, 100), dtype=np.uint8))
    nan_body = b'{"pixels": [[' + b",".join([b"[" + b",".join([b"NaN"] * 8) + b"]"] * 8) + b"]]}"
    cases = [
        (
            dict(files=upload(b"just some text", "a.txt", "text/plain")),
            422,
            "not_an_image",
            "a.txt",
        ),
        (dict(files=upload(png[: len(png) // 2])), 422, "corrupt_image", "truncated"),
        (dict(files=upload(ppm(), "x.ppm")), 415, "unsupported_image_format", "PPM"),
        (dict(files=upload(big)), 413, "image_too_large", "JEM_MAX_IMAGE_PIXELS"),
        (dict(files=upload(png) * 5), 422, "too_many_images", "JEM_MAX_IMAGES_PER_REQUEST"),
        (dict(json={"images": [""] * 5}), 422, "too_many_images", "5 images"),
        (dict(json={"pixels": [[[0.0] * 7] * 8]}), 422, "invalid_input", "shape"),
        (
            dict(content=nan_body, headers={"content-type": "application/json"}),
            422,
            "invalid_input",
            "NaN",
        ),
        (dict(json={"pixels": [[[2.0] * 8] * 8]}), 422, "invalid_input", "[-1.0, 1.0]"),
        (
            dict(json={"pixels": [[[300] * 8] * 8], "pixel_format": "uint8"}),
            422,
            "invalid_input",
            "0..255",
        ),
        (dict(json={"images": ["%%%"]}), 422, "not_an_image", "base64"),
        (dict(json={"images": [], "pixels": []}), 422, "invalid_input", "exactly one"),
        (dict(json={"images": []}), 422, "invalid_input", "no images"),
        (dict(json={"imgs": []}), 422, "invalid_input", "imgs"),
        (
            dict(content=b"{not json", headers={"content-type": "application/json"}),
            422,
            "invalid_input",
            "JSON",
        ),
        (
            dict(content=b"x", headers={"content-type": "text/plain"}),
            415,
            "unsupported_media_type",
            "multipart",
        ),
        (dict(data={"field": "value"}, files=[]), 415, "unsupported_media_type", ""),
        (dict(files=upload(b"x" * 70_000)), 413, "body_too_large", "JEM_MAX_BODY_BYTES"),
    ]
    for kwargs, status, code, needle in cases:
        response = await strict.post(PREDICT, **kwargs)  # type: ignore[arg-type]
        await check(response, status, code, needle)
        # the service keeps serving after every one of them
        ok = await strict.post(PREDICT, files=upload(png))
        assert ok.status_code == 200


async def test_streamed_body_over_the_limit_is_413(strict: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"0" * 1024

    response = await strict.post(
        PREDICT, content=chunks(), headers={"content-type": "application/json"}
    )
    await check(response, 413, "body_too_large", "JEM_MAX_BODY_BYTES")


async def test_a_request_refused_before_routing_is_counted_under_its_endpoint(
    strict: httpx.AsyncClient,
) -> None:
    # the body limit answers before the router runs: the log and the metrics still name the
    # route the request was for, and its model
    response = await strict.post(PREDICT, files=upload(b"x" * 70_000))
    await check(response, 413, "body_too_large", "JEM_MAX_BODY_BYTES")
    text = (await strict.get("/metrics")).text
    assert requests_total(text, "predict", "413") == 1
    assert requests_total(text, "other", "413") == 0
    assert 'model="served"' in next(
        line
        for line in text.splitlines()
        if line.startswith("jem_requests_total") and '"413"' in line
    )


async def test_query_parameters_routes_and_models(
    strict: httpx.AsyncClient, digits: Digits
) -> None:
    png = png_bytes(digits.test_u8[0])
    await check(
        await strict.post(PREDICT + "?top_k=0", files=upload(png)), 422, "validation_error", "top_k"
    )
    await check(
        await strict.post(PREDICT + "?top_k=11", files=upload(png)),
        422,
        "invalid_parameters",
        "JEM_MAX_TOP_K",
    )
    await check(
        await strict.post(PREDICT + "?ood=maybe", files=upload(png)), 422, "validation_error", "ood"
    )
    await check(
        await strict.post("/v1/models/nope/predict", files=upload(png)),
        404, "model_not_found", "'nope'", "plain, served",
    )  # fmt: skip
    await check(await strict.get("/v1/models/nope"), 404, "model_not_found", "served")
    v2 = await strict.get("/v2/whatever")  # under /v2, the Open Inference Protocol's shape
    assert v2.status_code == 404
    assert set(v2.json()) == {"error"}
    assert "/v2/whatever" in v2.json()["error"]
    await check(await strict.get(PREDICT), 405, "method_not_allowed", "GET")
    await check(
        await strict.post("/v1/models/served/generate", json={"num_samples": "x"}),
        422,
        "validation_error",
        "num_samples",
    )


async def test_json_bodies_that_do_not_parse_or_name_unknown_fields(
    strict: httpx.AsyncClient,
) -> None:
    generate = "/v1/models/served/generate"
    broken = await strict.post(
        generate, content=b'{"num_samples": 2, ', headers={"Content-Type": "application/json"}
    )
    await check(
        broken, 422, "validation_error", "the body is not valid JSON at character 19: Expecting"
    )
    # an unknown field: the message lists the ones there are
    await check(
        await strict.post(generate, json={"image": "x"}),
        422, "validation_error", "body.image: not a field of this request; fields: num_samples",
    )  # fmt: skip
