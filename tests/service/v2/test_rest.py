"""/v2 in-process: request bodies built and responses read by tritonclient.http's own encoder
and decoder, sent through the ASGI app (the real-process tests are in test_clients.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as th
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import Digits, make_settings, png_bytes, serve

pytestmark = pytest.mark.anyio
INFER = "/v2/models/served/infer"


def triton_input(name: str, array: np.ndarray, datatype: str, *, binary: bool) -> th.InferInput:
    tensor = th.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


async def infer(
    client: httpx.AsyncClient,
    inputs: list[th.InferInput],
    outputs: list[str] | None = None,
    *,
    binary: bool = True,
    path: str = INFER,
    headers: dict[str, str] | None = None,
) -> th.InferResult:
    """POST as tritonclient.http does (no Content-Type) and decode as it does; raises on errors."""
    requested = [th.InferRequestedOutput(n, binary_data=binary) for n in outputs or []]
    body, json_size = th.InferenceServerClient.generate_request_body(inputs, requested)
    sent = dict(headers or {})
    if json_size is not None:
        sent["Inference-Header-Content-Length"] = str(json_size)
    r = await client.post(path, content=body, headers=sent)
    assert r.status_code == 200, r.text
    length = r.headers.get("inference-header-content-length")
    return th.InferResult.from_response_body(r.content, header_length=length and int(length))


async def test_health_and_metadata(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}
    server = (await client.get("/v2")).json()
    assert "binary_tensor_data" in server["extensions"]
    meta = (await client.get("/v2/models/served")).json()
    assert meta["versions"] == ["1"]
    assert {i["name"]: (i["datatype"], i["shape"]) for i in meta["inputs"]} == {
        "pixels": ("FP32", [-1, 1, 8, 8]),
        "pixels_uint8": ("UINT8", [-1, 8, 8, 1]),
        "images": ("BYTES", [-1, 1]),
    }
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]}
    assert outputs["probabilities"] == ("FP32", [-1, 10])
    assert outputs["ood"] == ("BOOL", [-1])
    assert (await client.get("/v2/models/served/versions/1")).json() == meta
    assert (await client.get("/v2/models/served/ready")).status_code == 200
    # an uncalibrated model has no OOD verdicts to offer
    plain = (await client.get("/v2/models/plain")).json()
    assert not any(o["name"].startswith("ood") for o in plain["outputs"])


@pytest.mark.parametrize("binary", [True, False])
async def test_labels_and_probabilities_equal_v1(
    client: httpx.AsyncClient, digits: Digits, binary: bool
) -> None:
    u8 = digits.test_u8[:16]
    pngs = [png_bytes(a) for a in u8]
    v1 = await client.post(
        "/v1/models/served/predict", files=[("files", (f"{i}.png", b)) for i, b in enumerate(pngs)]
    )
    expected = v1.json()["predictions"]
    labels = [p["label"] for p in expected]
    confidence = np.array([p["confidence"] for p in expected])
    blobs = pngs if binary else [base64.b64encode(b) for b in pngs]
    inputs = {
        "images": triton_input("images", np.array(blobs, dtype=object), "BYTES", binary=binary),
        # Triton's shape for one scalar per image (config dims [1]), as perf_analyzer sends it
        "images [N, 1]": triton_input(
            "images", np.array(blobs, dtype=object)[:, None], "BYTES", binary=binary
        ),
        "pixels_uint8": triton_input("pixels_uint8", u8[..., None], "UINT8", binary=binary),
        "pixels": triton_input(
            "pixels", (u8[:, None] / 127.5 - 1).astype(np.float32), "FP32", binary=binary
        ),
    }
    for name, tensor in inputs.items():
        result = await infer(client, [tensor], ["label", "probabilities"], binary=binary)
        assert result.as_numpy("label").tolist() == labels, name
        probs = result.as_numpy("probabilities")
        assert probs.shape == (16, 10)
        np.testing.assert_allclose(probs[np.arange(16), labels], confidence, rtol=1e-5)


async def test_every_output_and_the_default_set(client: httpx.AsyncClient, digits: Digits) -> None:
    u8 = digits.test_u8[:4, ..., None]
    tensor = triton_input("pixels_uint8", u8, "UINT8", binary=True)
    default = await infer(client, [tensor])
    names = [o["name"] for o in default.get_response()["outputs"]]
    assert names == [
        "logits", "probabilities", "label", "class_name", "energy", "max_softmax",
        "ood_energy", "ood_max_softmax",
    ]  # fmt: skip
    everything = [
        *names, "grad_norm", "ood_grad_norm", "ood",
    ]  # fmt: skip
    for binary in (True, False):
        tensor = triton_input("pixels_uint8", u8, "UINT8", binary=binary)
        r = await infer(client, [tensor], everything, binary=binary)
        logits = r.as_numpy("logits")
        assert logits.shape == (4, 10)
        assert logits.dtype == np.float32
        energy = -np.log(np.exp(logits.astype(np.float64)).sum(axis=1))
        np.testing.assert_allclose(r.as_numpy("energy"), energy, rtol=1e-4)
        assert r.as_numpy("label").dtype == np.int64
        assert [
            str(c, "utf-8") if isinstance(c, bytes) else c for c in r.as_numpy("class_name")
        ] == [str(v) for v in r.as_numpy("label")]
        assert (r.as_numpy("grad_norm") > 0).all()
        for flag in ("ood_energy", "ood_max_softmax", "ood_grad_norm", "ood"):
            assert r.as_numpy(flag).dtype == np.bool_
            assert r.as_numpy(flag).shape == (4,)


async def test_grad_norm_only_when_asked_for(client: httpx.AsyncClient, digits: Digits) -> None:
    def grad_batches(text: str) -> float:
        for family in text_string_to_metric_families(text):
            if family.name == "jem_compute_seconds":
                return sum(
                    s.value
                    for s in family.samples
                    if s.name.endswith("_count") and s.labels["kind"] == "grad"
                )
        return 0.0

    tensor = triton_input("pixels_uint8", digits.test_u8[:2, ..., None], "UINT8", binary=True)
    before = grad_batches((await client.get("/metrics")).text)
    await infer(client, [tensor], ["label", "energy", "ood_energy"])
    assert grad_batches((await client.get("/metrics")).text) == before
    await infer(client, [tensor], ["grad_norm"])
    assert grad_batches((await client.get("/metrics")).text) == before + 1
    metrics = (await client.get("/metrics")).text
    assert 'jem_requests_total{endpoint="v2_infer",model="served",status="200"}' in metrics


def _bad(name: str, array: np.ndarray, datatype: str) -> bytes:
    body, _ = th.InferenceServerClient.generate_request_body(
        [triton_input(name, array, datatype, binary=False)]
    )
    return bytes(body)


async def test_bad_input_gets_the_protocols_error(client: httpx.AsyncClient) -> None:
    u8 = np.zeros((1, 8, 8, 1), dtype=np.uint8)
    cases: list[tuple[bytes, dict[str, str], str]] = [
        (_bad("pixels_uint8", u8.astype(np.int32), "INT32"), {}, "must be UINT8"),
        (_bad("pixels_uint8", u8[:, :4], "UINT8"), {}, "expected [N, 8, 8, 1]"),
        (_bad("pixels", np.full((1, 1, 8, 8), 3.0, np.float32), "FP32"), {}, "[-1.0, 1.0]"),
        # the protocol's own way to send 0..255, not /v1's pixel_format
        (_bad("pixels", np.full((1, 1, 8, 8), 3.0, np.float32), "FP32"), {}, "'pixels_uint8'"),
        (_bad("pixels", np.full((1, 1, 8, 8), np.nan, np.float32), "FP32"), {}, "NaN"),
        (_bad("pixels_uint8", np.zeros((65, 8, 8, 1), np.uint8), "UINT8"), {}, "limit is 64"),
        (_bad("images", np.array([b"garbage"], dtype=object), "BYTES"), {}, "not valid base64"),
        (_bad("images", np.array([base64.b64encode(b"gar")], object), "BYTES"), {}, "not an image"),
        (
            _bad("images", np.array([[base64.b64encode(b"a")] * 2], object), "BYTES"),
            {},
            "has shape [1, 2]; expected [N, 1] or [N]",
        ),
        (_bad("tensor", u8, "UINT8"), {}, "unknown input 'tensor'"),
        (b"{not json", {}, "invalid inference request"),
        (b'{"inputs": []}', {}, "exactly one input"),
        (_one_input("pixels_uint8", [1, 8, 8, 1], "UINT8", data=[1, 2, 3]), {}, "needs 64"),
        (
            _one_input("images", [1], "BYTES", parameters={"binary_data_size": 10}),
            {"Inference-Header-Content-Length": "999999"},
            "Inference-Header-Content-Length",
        ),
    ]
    for body, headers, message in cases:
        r = await client.post(INFER, content=body, headers=headers)
        assert r.status_code == 400, (message, r.text)
        assert isinstance(r.json()["error"], str)
        assert message in r.json()["error"], r.json()
        assert "pixel_format" not in r.json()["error"]  # a /v1 term
    tensor = _bad("pixels_uint8", u8, "UINT8")
    unknown_output = json.loads(tensor)
    unknown_output["outputs"] = [{"name": "nope"}]
    r = await client.post(INFER, json=unknown_output)
    assert r.status_code == 400
    assert "unknown output 'nope'" in r.json()["error"]
    unknown_output["outputs"] = [{"name": "ood"}]
    r = await client.post("/v2/models/plain/infer", json=unknown_output)
    assert r.status_code == 400
    assert "calibrated" in r.json()["error"]
    for path in ("/v2/models/nope/infer", "/v2/models/served/versions/7/infer"):
        r = await client.post(path, content=tensor)
        assert r.status_code == 404
        assert isinstance(r.json()["error"], str)
    r = await client.post(INFER, content=b"0" * (9 * 1024 * 1024))
    assert r.status_code == 413
    assert isinstance(r.json()["error"], str)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models", 404),
        ("POST", "/v2/repository/index", 404),  # Triton's model repository extension
        ("GET", "/v2/models/served/stats", 404),  # Triton's statistics extension
        ("GET", "/v2/nothing", 404),
        ("DELETE", "/v2", 405),
        ("GET", INFER, 405),
        ("PUT", "/v2/models/served", 405),
        ("POST", "/v2/health/ready", 405),
    ],
)
async def test_unknown_routes_and_methods_under_v2_have_the_protocols_shape(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    r = await client.request(method, path)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}
    assert isinstance(r.json()["error"], str), r.json()
    assert path in r.json()["error"]
    if status == 404:
        assert "no model repository or statistics, no shared memory" in r.json()["error"]


async def test_unknown_routes_outside_v2_keep_the_v1_shape(client: httpx.AsyncClient) -> None:
    for method, path, status in (("GET", "/v1/nothing", 404), ("GET", "/v1/models/x/predict", 405)):
        r = await client.request(method, path)
        assert r.status_code == status, r.text
        assert set(r.json()["error"]) == {"code", "message"}


async def test_api_keys_guard_v2_but_not_its_health(store_root: Path, digits: Digits) -> None:
    settings = make_settings(store_root, api_keys=["k1"])
    tensor = triton_input("pixels_uint8", digits.test_u8[:1, ..., None], "UINT8", binary=True)
    async with serve(settings) as client:
        assert (await client.get("/v2/health/ready")).status_code == 200
        assert (await client.get("/v2/health/live")).status_code == 200
        r = await client.get("/v2/models/served")
        assert r.status_code == 401
        # the model readiness probe is exempt from JEM_LIMIT_CONCURRENCY, not from the keys
        assert (await client.get("/v2/models/served/ready")).status_code == 401
        ready = await client.get("/v2/models/served/ready", headers={"Authorization": "Bearer k1"})
        assert ready.status_code == 200
        assert isinstance(r.json()["error"], str)
        r = await client.get("/v2/models/served", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 403
        result = await infer(client, [tensor], ["label"], headers={"Authorization": "Bearer k1"})
        assert result.as_numpy("label").shape == (1,)


async def test_full_queue_answers_503_with_retry_after(store_root: Path, digits: Digits) -> None:
    settings = make_settings(store_root, queue_size=1, max_batch_size=1, max_wait_ms=0.0)
    body = _bad("pixels_uint8", digits.test_u8[:1, ..., None], "UINT8")
    async with serve(settings) as client:
        answers = await asyncio.gather(*(client.post(INFER, content=body) for _ in range(24)))
    statuses = {r.status_code for r in answers}
    assert statuses <= {200, 503}, statuses
    assert 503 in statuses
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert "JEM_QUEUE_SIZE" in busy.json()["error"]


def _one_input(name: str, shape: list[int], datatype: str, **fields: Any) -> bytes:
    tensor = {"name": name, "shape": shape, "datatype": datatype, **fields}
    return json.dumps({"inputs": [tensor]}).encode()
