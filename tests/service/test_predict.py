"""Predict and OOD in-process: real image bytes in, the model's own answers out."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from jem import uint8_to_tensor
from model_store import ModelStore
from service.schemas import OODResponse, PredictResponse
from tests.service.conftest import Digits, make_settings, png_bytes

pytestmark = pytest.mark.anyio


def files(
    images: np.ndarray, fmt: str = "PNG", **save: object
) -> list[tuple[str, tuple[str, bytes, str]]]:
    ext = fmt.lower()
    return [
        ("files", (f"{i}.{ext}", png_bytes(im, fmt, **save), f"image/{ext}"))
        for i, im in enumerate(images)
    ]


async def predict_all(
    client: httpx.AsyncClient, images: np.ndarray, fmt: str = "PNG", **save: object
) -> list[dict]:
    out = []
    for start in range(0, len(images), 64):
        r = await client.post(
            "/v1/models/served/predict", files=files(images[start : start + 64], fmt, **save)
        )
        assert r.status_code == 200, r.text
        out += r.json()["predictions"]
    return out


async def test_png_and_jpeg_digits_get_the_right_labels(
    client: httpx.AsyncClient, digits: Digits, store_root: Path
) -> None:
    loaded = ModelStore(store_root).load("served")
    with torch.no_grad():
        expected = loaded.model(digits.test_x).argmax(1)
    png = await predict_all(client, digits.test_u8)
    labels = torch.tensor([p["label"] for p in png])
    # PNG is lossless: the service gives exactly the model's answers on the test split
    assert torch.equal(labels, expected)
    accuracy = (labels == digits.test_y).float().mean().item()
    assert accuracy >= 0.9, accuracy
    jpeg = await predict_all(client, digits.test_u8, "JPEG", quality=95)
    jpeg_acc = (torch.tensor([p["label"] for p in jpeg]) == digits.test_y).float().mean().item()
    assert jpeg_acc >= 0.85, jpeg_acc
    assert [p["class_name"] for p in png[:3]] == [str(int(v)) for v in expected[:3]]


async def test_confidences_are_the_calibrated_softmax(
    client: httpx.AsyncClient, digits: Digits, store_root: Path
) -> None:
    loaded = ModelStore(store_root).load("served")
    assert loaded.manifest.calibration is not None
    temperature = loaded.manifest.calibration.temperature
    images = digits.test_u8[:20]
    r = await client.post("/v1/models/served/predict?top_k=10", files=files(images))
    body = r.json()
    assert body["calibrated"] is True
    assert body["temperature"] == pytest.approx(temperature)
    with torch.no_grad():
        logits = loaded.model(uint8_to_tensor(images[..., None], loaded.input_spec))
    probs = torch.softmax(logits / temperature, dim=1)
    energy = -torch.logsumexp(logits, dim=1)
    for i, p in enumerate(body["predictions"]):
        assert p["confidence"] == pytest.approx(probs[i].max().item(), abs=1e-5)
        assert len(p["top_k"]) == 10
        got = {c["label"]: c["probability"] for c in p["top_k"]}
        for k in range(10):
            assert got[k] == pytest.approx(probs[i, k].item(), abs=1e-5)
        assert p["energy"] == pytest.approx(energy[i].item(), abs=1e-4)
        verdict = p["ood"]["energy"]
        assert verdict["score"] == p["energy"]
        assert verdict["flagged"] == (verdict["score"] > verdict["threshold"])
        assert 0.0 <= verdict["percentile"] <= 100.0
        assert "grad_norm" not in p["ood"]


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


async def test_ood_full_adds_grad_norm_and_ood_route_gives_every_score(
    client: httpx.AsyncClient, digits: Digits
) -> None:
    images = digits.test_u8[:4]
    full = (await client.post("/v1/models/served/predict?ood=full", files=files(images))).json()
    ood = (await client.post("/v1/models/served/ood", files=files(images))).json()
    for p, o in zip(full["predictions"], ood["results"], strict=True):
        assert set(p["ood"]) == {"energy", "grad_norm"}
        assert set(o["scores"]) == {"energy", "grad_norm", "max_softmax"}
        assert p["ood"]["grad_norm"]["score"] == pytest.approx(
            o["scores"]["grad_norm"]["score"], rel=1e-4
        )
        # combined: any score beyond its (1 - 0.05 / 3) in-distribution quantile
        beyond = [n for n, v in o["scores"].items() if v["percentile"] > 100 * (1 - 0.05 / 3)]
        assert sorted(o["flagged_by"]) == sorted(beyond)
        assert o["flagged"] == bool(beyond)
        assert set(beyond) <= {n for n, v in o["scores"].items() if v["flagged"]}
        assert o["label"] == p["label"]


async def test_responses_validate_strictly_against_their_schemas(
    client: httpx.AsyncClient, digits: Digits
) -> None:
    """The predictor builds responses without validation (plain dicts, model_construct): what
    goes on the wire must still be exactly the documented schema, types included, and the very
    bytes the response model itself would write (field order, number formatting)."""
    images = digits.test_u8[:3]
    full = await client.post("/v1/models/served/predict?ood=full&top_k=4", files=files(images))
    ood = await client.post("/v1/models/served/ood", files=files(images))
    predicted = PredictResponse.model_validate_json(full.content, strict=True)
    checked = OODResponse.model_validate_json(ood.content, strict=True)
    assert [len(p.top_k) for p in predicted.predictions] == [4, 4, 4]
    assert all(isinstance(p.ood["grad_norm"].flagged, bool) for p in predicted.predictions)
    assert [r.index for r in checked.results] == [0, 1, 2]
    assert full.headers["content-type"] == "application/json"
    assert predicted.model_dump_json().encode() == full.content
    plain = await client.post("/v1/models/served/predict", files=files(digits.test_u8[:64]))
    assert PredictResponse.model_validate_json(plain.content).model_dump_json() == plain.text


async def test_energy_flags_fire_more_on_noise_than_on_digits(
    client: httpx.AsyncClient, digits: Digits
) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(64, 8, 8), dtype=np.uint8)
    on_noise = await predict_all(client, noise)
    on_digits = await predict_all(client, digits.test_u8[:64])
    rate_noise = np.mean([p["ood"]["energy"]["flagged"] for p in on_noise])
    rate_digits = np.mean([p["ood"]["energy"]["flagged"] for p in on_digits])
    # a 200-step cross-entropy fixture model, not a JEM: only the direction is asserted here;
    # the shipped digits-jem is held to real rates in test_shipped.py
    assert rate_noise > 0.3, (rate_noise, rate_digits)
    assert rate_noise > 4 * rate_digits, (rate_noise, rate_digits)


async def test_uncalibrated_model_says_so(client: httpx.AsyncClient, digits: Digits) -> None:
    r = await client.post("/v1/models/plain/predict?ood=full", files=files(digits.test_u8[:2]))
    body = r.json()
    assert body["calibrated"] is False
    assert body["temperature"] == 1.0
    for verdict in body["predictions"][0]["ood"].values():
        assert verdict["threshold"] is None
        assert verdict["flagged"] is None
        assert verdict["percentile"] is None
    ood = (await client.post("/v1/models/plain/ood", files=files(digits.test_u8[:2]))).json()
    assert ood["results"][0]["flagged"] is None
    assert ood["results"][0]["flagged_by"] == []


async def test_model_listing_and_info(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/v1/models")).json()["models"]
    assert [m["name"] for m in listing] == ["plain", "served"]
    info = (await client.get("/v1/models/served")).json()
    assert info["class_names"] == [str(k) for k in range(10)]
    assert info["input_spec"]["height"] == 8
    assert info["has_replay_buffer"] is True
    assert info["calibration"]["scores"]["energy"]["direction"] == "higher_is_ood"
    assert info["sampling"]["steps"] == 20
    assert info["ready"] is True


async def test_health_ready_and_request_ids(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.json() == {"status": "ready", "models": ["plain", "served"]}
    assert len(ready.headers["x-request-id"]) == 32
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    junk = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert junk.headers["x-request-id"] != "bad id\twith spaces"


async def test_a_missing_model_fails_the_startup(tmp_path: Path) -> None:
    """JEM_EXIT_ON_LOAD_ERROR (default): the lifespan fails before the server would listen."""
    from service import create_app
    from service.runtime import ModelsUnavailable

    app = create_app(make_settings(tmp_path, models=["missing"]))
    with pytest.raises(ModelsUnavailable, match="model 'missing' cannot be served: no model"):
        async with app.router.lifespan_context(app):
            pass


async def test_readyz_reports_why_not_ready(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, models=["missing"], exit_on_load_error=False)
    from service import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for _ in range(100):
                r = await c.get("/readyz")
                if "failed" in r.text:
                    break
                await __import__("anyio").sleep(0.02)
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "not_ready"
            assert "'missing' failed to load" in r.json()["error"]["message"]
            r = await c.post("/v1/models/missing/predict", json={"pixels": []})
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "not_ready"


async def test_openapi_documents_inputs_and_outputs(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    predict = paths["/v1/models/{model}/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {
        "multipart/form-data",
        "application/json",
        "application/x-npy",
    }
    assert "PredictJSON" in schema["components"]["schemas"]
    assert {"200", "404", "413", "415", "422", "503", "504"} <= set(predict["responses"])
    generate = paths["/v1/models/{model}/generate"]["post"]
    assert "image/png" in generate["responses"]["200"]["content"]
    ood_doc = schema["components"]["schemas"]["OODResult"]["properties"]["scores"]["description"]
    assert "higher = more likely out-of-distribution" in ood_doc
    assert {"/healthz", "/readyz", "/metrics", "/v1/models", "/v1/models/{model}"} <= set(paths)
    assert (await client.get("/docs")).status_code == 200


async def test_a_damaged_model_file_fails_the_startup(store_root: Path, tmp_path: Path) -> None:
    """One flipped byte in the weights: the startup check's checksum stops the process."""
    import shutil

    from service import create_app
    from service.runtime import ModelsUnavailable

    store = tmp_path / "store"
    shutil.copytree(store_root, store)
    weights = store / "served" / "1" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    app = create_app(make_settings(store, models=["served"]))
    with pytest.raises(ModelsUnavailable, match=r"'served' cannot be served: .*sha256"):
        async with app.router.lifespan_context(app):
            pass
