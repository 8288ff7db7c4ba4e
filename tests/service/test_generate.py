"""SGLD generation over HTTP: reproducible, limited, bounded, and out of classification's way."""

from __future__ import annotations

import asyncio
import base64
import io
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from jem import ClassGaussianInit, MixedInit, ReplayBuffer, UniformInit
from model_store import ManifestDraft, ModelStore
from tests.service.conftest import Digits, make_settings, png_bytes, serve
from training.data import load_digits_dataset

pytestmark = pytest.mark.anyio

GENERATE = "/v1/models/served/generate"


async def test_same_seed_same_bytes(client: httpx.AsyncClient) -> None:
    body = {"num_samples": 3, "label": "7", "steps": 12, "init": "buffer", "seed": 42}
    a, b = (
        (await client.post(GENERATE, json=body)).json(),
        (await client.post(GENERATE, json=body)).json(),
    )
    assert [s["png_base64"] for s in a["samples"]] == [s["png_base64"] for s in b["samples"]]
    other = (await client.post(GENERATE, json={**body, "seed": 43})).json()
    assert [s["png_base64"] for s in other["samples"]] != [s["png_base64"] for s in a["samples"]]
    params = a["parameters"]
    assert params == {
        "num_samples": 3, "label": 7, "class_name": "7", "steps": 12, "step_size": 1.0,
        "noise_std": 0.01, "clamp": [-1.0, 1.0], "init": "buffer", "seed": 42,
    }  # fmt: skip
    for sample in a["samples"]:
        image = Image.open(io.BytesIO(base64.b64decode(sample["png_base64"])))
        assert image.size == (8, 8)
        assert image.mode == "L"
        assert 0.0 <= sample["confidence"] <= 1.0
        assert sample["class_name"] == str(sample["label"])
    grid_a = await client.post(GENERATE, json=body, headers={"Accept": "image/png"})
    grid_b = await client.post(GENERATE, json=body, headers={"Accept": "image/png"})
    assert grid_a.headers["content-type"] == "image/png"
    assert grid_a.headers["x-seed"] == "42"
    assert grid_a.content == grid_b.content
    width, height = Image.open(io.BytesIO(grid_a.content)).size
    assert height == 34 + 2  # one labelled row: the three samples of class "7", not wrapped
    assert width > 3 * 34 + 2  # the three cells and the label's column


async def test_png_grid_has_one_row_per_class(client: httpx.AsyncClient) -> None:
    labels = ["1", "2", "3"] * 4  # 12 samples would wrap a square grid at 4 columns
    body = {"num_samples": 12, "label": labels, "steps": 2, "seed": 0}
    grid = await client.post(GENERATE, json=body, headers={"Accept": "image/png"})
    image = Image.open(io.BytesIO(grid.content))
    assert image.height == 3 * 34 + 2
    label_w = image.width - 4 * 34 - 2
    # each row: its label's column (black text on white), then exactly four cells
    for row in range(3):
        strip = image.crop((0, 2 + row * 34, label_w, (row + 1) * 34)).convert("L")
        assert strip.getextrema()[0] < 100  # the class name is drawn there


async def test_defaults_come_from_the_manifest(client: httpx.AsyncClient) -> None:
    served = (await client.post(GENERATE, json={"num_samples": 1})).json()["parameters"]
    assert (served["steps"], served["init"], served["label"]) == (20, "noise", None)
    assert isinstance(served["seed"], int)
    # from the buffer: the training chain length (training.config.sgld_steps) when recorded
    buffer = await client.post(GENERATE, json={"num_samples": 1, "init": "buffer"})
    assert buffer.json()["parameters"]["steps"] == 7


async def test_every_limit_gives_its_error(store_root: Path) -> None:
    settings = make_settings(
        store_root,
        generation_max_samples=4,
        generation_max_steps=50,
        generation_max_step_size=2.0,
        generation_max_noise_std=0.5,
    )
    async with serve(settings) as client:
        cases = [
            ({"num_samples": 5}, 422, "invalid_parameters", "JEM_GENERATION_MAX_SAMPLES"),
            ({"steps": 51}, 422, "invalid_parameters", "JEM_GENERATION_MAX_STEPS"),
            ({"step_size": 2.5}, 422, "invalid_parameters", "JEM_GENERATION_MAX_STEP_SIZE"),
            ({"noise_std": 0.6}, 422, "invalid_parameters", "JEM_GENERATION_MAX_NOISE_STD"),
            ({"num_samples": 0}, 422, "validation_error", "num_samples"),
            ({"step_size": -1}, 422, "validation_error", "step_size"),
            ({"label": "eleven"}, 422, "invalid_parameters", "unknown class"),
            ({"label": 10}, 422, "invalid_parameters", "out of range"),
            ({"num_samples": 3, "label": [1, 2]}, 422, "invalid_parameters", "one class per"),
            ({"num_samples": 2, "label": [1, "x"]}, 422, "invalid_parameters", "unknown class"),
            ({"init": "magic"}, 422, "validation_error", "init"),
            ({"seed": -1}, 422, "validation_error", "seed"),
            ({"extra": 1}, 422, "validation_error", "extra"),
        ]
        for body, status, code, needle in cases:
            r = await client.post(GENERATE, json=body)
            assert r.status_code == status, (body, r.text)
            assert r.json()["error"]["code"] == code, r.text
            assert needle in r.json()["error"]["message"], r.text
        r = await client.post("/v1/models/plain/generate", json={"init": "buffer"})
        assert r.status_code == 422
        assert "no replay buffer" in r.json()["error"]["message"]


async def test_time_budget_is_a_504(store_root: Path) -> None:
    async with serve(make_settings(store_root, generation_time_budget_s=0.2)) as client:
        r = await client.post(GENERATE, json={"num_samples": 64, "steps": 2000, "seed": 0})
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "generation_timeout"
        assert "JEM_GENERATION_TIME_BUDGET_S" in r.json()["error"]["message"]


async def test_concurrency_cap_answers_429_with_retry_after(store_root: Path) -> None:
    settings = make_settings(
        store_root, generation_concurrency=1, generation_queue_size=0, generation_time_budget_s=2.0
    )
    async with serve(settings) as client:
        long = asyncio.ensure_future(
            client.post(GENERATE, json={"num_samples": 64, "steps": 2000, "seed": 0})
        )
        await asyncio.sleep(0.3)
        busy = await client.post(GENERATE, json={"num_samples": 1, "steps": 1})
        assert busy.status_code == 429
        assert busy.json()["error"]["code"] == "generation_busy"
        assert int(busy.headers["retry-after"]) >= 1
        assert (await long).status_code == 504
        again = await client.post(GENERATE, json={"num_samples": 1, "steps": 1})
        assert again.status_code == 200


async def test_predict_latency_during_generation(store_root: Path, digits: Digits) -> None:
    settings = make_settings(store_root, generation_time_budget_s=20.0)
    files = [("files", ("d.png", png_bytes(digits.test_u8[0]), "image/png"))]

    async def latencies(n: int) -> list[float]:
        out = []
        for _ in range(n):
            start = time.perf_counter()
            r = await client.post("/v1/models/served/predict", files=files)
            assert r.status_code == 200
            out.append(time.perf_counter() - start)
        return out

    async with serve(settings) as client:
        idle = statistics.median(await latencies(20))
        gen = asyncio.ensure_future(
            client.post(GENERATE, json={"num_samples": 64, "steps": 400, "seed": 0})
        )
        await asyncio.sleep(0.2)
        busy = statistics.median(await latencies(20))
        still_running = not gen.done()
        assert (await gen).status_code == 200
    print(
        f"predict median latency: idle {idle * 1000:.1f} ms, during generation {busy * 1000:.1f} ms"
    )
    assert still_running, "the generation finished before the measurement; make it longer"
    assert busy < max(5 * idle, idle + 0.1), (idle, busy)


async def test_one_class_per_sample(client: httpx.AsyncClient) -> None:
    body = {"num_samples": 4, "label": [0, "1", 2, 9], "init": "buffer", "steps": 3, "seed": 5}
    r = await client.post(GENERATE, json=body)
    assert r.status_code == 200, r.text
    params = r.json()["parameters"]
    assert params["label"] == [0, 1, 2, 9]
    assert params["class_name"] == ["0", "1", "2", "9"]
    grid = await client.post(GENERATE, json=body, headers={"Accept": "image/png, application/json"})
    assert grid.headers["content-type"] == "image/png"
    as_json = await client.post(
        GENERATE, json=body, headers={"Accept": "application/json, image/png"}
    )
    assert as_json.headers["content-type"] == "application/json"


@pytest.mark.parametrize("mixed", [False, True])
async def test_gaussian_init_starts_from_the_class_gaussians(
    client: httpx.AsyncClient, store_root: Path, tmp_path: Path, mixed: bool
) -> None:
    """JEM++ models (sampling.init "gaussian") sample from their own per-class Gaussians; a
    buffer whose restarts mix in uniform noise (buffer_init_uniform) gives its Gaussian part."""
    body = {"num_samples": 64, "label": "3", "steps": 0, "init": "gaussian", "seed": 0}
    refused = await client.post(GENERATE, json=body)  # "served" restarts chains uniformly
    assert refused.status_code == 422
    assert "no class Gaussians" in refused.json()["error"]["message"]

    data = load_digits_dataset(seed=0)
    x, y = data.train.inputs(), data.train.labels
    init = ClassGaussianInit.fit(x, y, 10, covariance="full")
    g = torch.Generator().manual_seed(0)
    chains_init = MixedInit(init, UniformInit(), 0.5) if mixed else init
    buffer = ReplayBuffer(100, (1, 8, 8), 10, chains_init, generator=g)
    source = ModelStore(store_root)
    loaded = source.load("served")
    draft = ManifestDraft.from_manifest(
        loaded.manifest,
        sampling={"steps": 5, "step_size": 1.0, "noise_std": 0.01, "init": "gaussian"},
    )
    ModelStore(tmp_path).save("jempp", loaded.model, draft, buffer=buffer.state_dict())
    async with serve(make_settings(tmp_path, models=["jempp"])) as c:
        r = await c.post("/v1/models/jempp/generate", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["parameters"]["init"] == "gaussian"
        pixels = np.stack(
            [
                np.asarray(Image.open(io.BytesIO(base64.b64decode(s["png_base64"]))))
                for s in r.json()["samples"]
            ]
        ).astype(np.float64)
    # with no SGLD steps the samples are the Gaussian's draws: their mean is the class mean
    mean_3 = data.train.images[data.train.labels == 3].double().mean(0)[..., 0].numpy()
    mean_other = data.train.images[data.train.labels == 0].double().mean(0)[..., 0].numpy()
    drawn = pixels.mean(0)
    assert np.abs(drawn - mean_3).mean() < 0.5 * np.abs(drawn - mean_other).mean()
