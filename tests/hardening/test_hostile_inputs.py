"""A corpus of hostile inputs: each gets a clear 4xx in the error shape, or a correct answer,
and after each one the service still answers /healthz and a valid predict."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.hardening.conftest import Digits
from tests.hardening.hostile import corpus, exif_rotated
from tests.service.conftest import png_bytes

pytestmark = pytest.mark.anyio
PREDICT = "/v1/models/served/predict"


async def _label(client: httpx.AsyncClient, data: bytes) -> int:
    r = await client.post(PREDICT, files=[("files", ("x.png", data, "image/png"))])
    assert r.status_code == 200, r.text
    return int(r.json()["predictions"][0]["label"])


async def _pick_digit(client: httpx.AsyncClient, digits: Digits) -> tuple[np.ndarray, int]:
    """A test digit the model gets right upright and wrong when rotated without EXIF: so the
    EXIF cases can only pass if the service applies the orientation."""
    for i in range(40):
        pixels, label = digits.test_u8[i], int(digits.test_y[i])
        if await _label(client, png_bytes(pixels)) != label:
            continue
        rotated = np.asarray(Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_90))
        if await _label(client, png_bytes(rotated)) != label:
            return pixels, label
    raise AssertionError("no test digit is classified right upright and wrong rotated")


def test_exif_helper_round_trips(digits: Digits) -> None:
    upright = Image.fromarray(digits.test_u8[0])
    stored = Image.open(io.BytesIO(exif_rotated(upright)))
    assert stored.getexif()[0x0112] == 6
    assert np.array_equal(
        np.asarray(stored), np.asarray(upright.transpose(Image.Transpose.ROTATE_90))
    )
    assert np.array_equal(np.asarray(ImageOps.exif_transpose(stored)), np.asarray(upright))


async def test_hostile_corpus(client: httpx.AsyncClient, digits: Digits) -> None:
    pixels, label = await _pick_digit(client, digits)
    valid = png_bytes(pixels)
    cases = corpus(pixels, label)
    failures = []
    for case in cases:
        r = await client.post(PREDICT, **case.request)
        problem = None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code not in case.statuses:
            problem = f"status {r.status_code}, expected one of {case.statuses}: {r.text[:300]}"
        elif r.status_code == 200:
            assert body is not None
            if case.label is not None and body["predictions"][0]["label"] != case.label:
                problem = f"label {body['predictions'][0]['label']}, expected {case.label}"
        elif not (
            isinstance(body, dict)
            and set(body) == {"error"}
            and set(body["error"]) == {"code", "message"}
            and body["error"]["message"]
        ):
            problem = f"error body not in the documented shape: {r.text[:300]}"
        elif case.codes and body["error"]["code"] not in case.codes:
            problem = f"error code {body['error']['code']!r}, expected one of {case.codes}"
        if problem is not None:
            failures.append(f"{case.name}: {problem}")
        # the service keeps serving after every one
        assert (await client.get("/healthz")).status_code == 200, case.name
        assert await _label(client, valid) == label, case.name
    print(f"\nhostile inputs tried: {len(cases)}")
    assert not failures, "\n".join(failures)
