"""Service test fixtures: a small digits model fitted in seconds, saved to a temporary store.

`served` is a calibrated CE-trained digits_cnn (temperature and OOD thresholds fitted on the
validation split, never on the test split the tests classify); `plain` is the same network
without calibration or replay buffer.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from jem import JEM, create_backbone
from jem.buffer import ReplayBuffer, UniformInit
from jem.metrics import fit_temperature
from jem.ood import ood_scores
from model_store import ModelStore, ScoreCalibration
from service import Settings, create_app
from tests.cross_entropy_fit import fit_cross_entropy
from training.data import load_digits_dataset

SEED = 0
WIDTH = 16


@dataclass(frozen=True)
class Digits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_u8: np.ndarray  # (N, 8, 8) uint8, as an upload would carry it
    test_x: torch.Tensor
    test_y: torch.Tensor


@pytest.fixture(scope="session")
def digits() -> Digits:
    data = load_digits_dataset(seed=0)
    return Digits(
        data.train.inputs(),
        data.train.labels,
        data.test.images.numpy()[..., 0],
        data.test.inputs(),
        data.test.labels,
    )


def _fit(x: torch.Tensor, y: torch.Tensor, steps: int = 200) -> JEM:
    torch.manual_seed(SEED)
    model = JEM(create_backbone("digits_cnn", width=WIDTH))
    g = torch.Generator().manual_seed(SEED)
    fit_cross_entropy(model, x, y, steps=steps, lr=3e-3, generator=g)
    return model


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_store(root)
    return root


def build_store(root: Path) -> None:
    """Fit, calibrate (on the validation split) and save `served` and `plain` under `root`."""
    data = load_digits_dataset(seed=0)
    model = _fit(data.train.inputs(), data.train.labels)
    val_x, val_y = data.val.inputs(), data.val.labels
    with torch.no_grad():
        val_logits = model(val_x)
    temperature = fit_temperature(val_logits, val_y)
    scores = ood_scores(model, val_x, temperature=temperature)
    calibration = {
        "temperature": temperature,
        "fitted_on": {"split": "val", "n": len(val_y), "seed": 0},
        "scores": {
            name: ScoreCalibration.from_scores(s.tolist()).model_dump()
            for name, s in scores.items()
        },
    }
    base = {
        "backbone": {"name": "digits_cnn", "kwargs": {"width": WIDTH}},
        "input_spec": data.spec.to_dict(),
        "class_names": data.class_names,
        "training": {
            "objective": "cross-entropy",
            "steps": 200,
            "seed": SEED,
            "config": {"sgld_steps": 7},
        },
        "metrics": {"note": "test fixture"},
        "sampling": {"steps": 20, "step_size": 1.0, "noise_std": 0.01},
    }
    store = ModelStore(root)
    g = torch.Generator().manual_seed(SEED)
    buffer = ReplayBuffer(100, (1, 8, 8), 10, UniformInit(), generator=g)
    store.save("served", model, {**base, "calibration": calibration}, buffer=buffer.state_dict())
    store.save("plain", model, base)


def make_settings(store_root: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "models": ["served", "plain"],
        "model_store": store_root,
        "max_wait_ms": 2.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 30.0) -> None:
    with anyio.fail_after(timeout_s):
        while (await client.get("/readyz")).status_code != 200:
            await anyio.sleep(0.02)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process: lifespan running, an httpx client on an ASGI transport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await wait_ready(client)
            yield client


@pytest.fixture
async def client(store_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(store_root)) as c:
        yield c


def png_bytes(pixels: np.ndarray, fmt: str = "PNG", **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def files(
    images: np.ndarray, fmt: str = "PNG", **save: object
) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Multipart `files` parts for httpx: each (H, W[, C]) uint8 image encoded as `fmt`."""
    ext = fmt.lower()
    return [
        ("files", (f"{i}.{ext}", png_bytes(im, fmt, **save), f"image/{ext}"))
        for i, im in enumerate(images)
    ]
