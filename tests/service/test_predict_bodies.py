"""Predict's other request bodies in-process: JSON (base64 images, float or uint8 pixels) and
.npy arrays give multipart's answers; bad .npy bodies get clear 422s before any allocation."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest

from jem import uint8_to_tensor
from tests.service.conftest import Digits, files, png_bytes

pytestmark = pytest.mark.anyio


async def test_json_inputs_match_multipart(client: httpx.AsyncClient, digits: Digits) -> None:
    images = digits.test_u8[:5]
    multipart = (await client.post("/v1/models/served/predict", files=files(images))).json()
    b64 = [base64.b64encode(png_bytes(im)).decode() for im in images]
    as_b64 = (await client.post("/v1/models/served/predict", json={"images": b64})).json()
    floats = uint8_to_tensor(images[..., None], _spec()).tolist()
    as_float = (await client.post("/v1/models/served/predict", json={"pixels": floats})).json()
    as_u8 = (
        await client.post(
            "/v1/models/served/predict",
            json={"pixels": images.tolist(), "pixel_format": "uint8"},
        )
    ).json()
    for other in (as_b64, as_float, as_u8):
        for a, b in zip(multipart["predictions"], other["predictions"], strict=True):
            assert a["label"] == b["label"]
            assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-6)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)  # type: ignore[no-untyped-call]
    return buffer.getvalue()


async def test_npy_arrays_match_multipart(client: httpx.AsyncClient, digits: Digits) -> None:
    images = digits.test_u8[:5]
    multipart = (await client.post("/v1/models/served/predict", files=files(images))).json()
    floats = uint8_to_tensor(images[..., None], _spec()).numpy()  # (N, 1, H, W) float32
    headers = {"content-type": "application/x-npy"}
    for array in (images, floats, floats.astype(np.float64), np.asfortranarray(images)):
        r = await client.post("/v1/models/served/predict", content=_npy(array), headers=headers)
        assert r.status_code == 200, r.text
        for a, b in zip(multipart["predictions"], r.json()["predictions"], strict=True):
            assert a["label"] == b["label"]
            assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not an npy file", 422, "not a .npy file"),
        (_npy(np.zeros((1, 8, 8), dtype=np.uint8))[:-20], 422, "says 64 bytes of data"),
        (_npy(np.array([{"a": 1}], dtype=object)), 422, "holds Python objects"),
        # a header claiming 10^15 bytes and no data: refused before any allocation
        (_npy_header((10**5, 10**5, 10**5)), 422, "says 1000000000000000 bytes of data"),
        (_npy(np.zeros((0, 8, 8), dtype=np.uint8)), 422, "no images"),
        (_npy(np.zeros((2, 7, 8), dtype=np.uint8)), 422, "expected [N, 1, 8, 8]"),
        (_npy(np.full((1, 8, 8), 2.0, dtype=np.float32)), 422, "must lie in [-1.0, 1.0]"),
        (_npy(np.zeros((1, 8, 8), dtype=bool)), 422, "nested list of numbers"),
        (_npy(np.zeros((65, 8, 8), dtype=np.uint8)), 422, "limit is 64"),
    ],
)
async def test_bad_npy_bodies_get_clear_errors(
    client: httpx.AsyncClient, body: bytes, status: int, message: str
) -> None:
    r = await client.post(
        "/v1/models/served/predict", content=body, headers={"content-type": "application/x-npy"}
    )
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]


def _spec():  # type: ignore[no-untyped-def]
    from jem import InputSpec

    return InputSpec(channels=1, height=8, width=8, color_mode="L")
