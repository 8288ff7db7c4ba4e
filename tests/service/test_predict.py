"""Predict and OOD in-process: real image bytes in, the model's own answers out. Other
request bodies (JSON, .npy): test_predict_bodies.py; listing, health and startup:
test_startup_and_info.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from jem import uint8_to_tensor
from model_store import ModelStore
from service.schemas import OODResponse, PredictResponse
from tests.service.conftest import Digits, files

pytestmark = pytest.mark.anyio


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
