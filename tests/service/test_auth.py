"""Optional API keys: 401 without a key, 403 with a wrong one; health and metrics stay open."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.service.conftest import make_settings, serve

pytestmark = pytest.mark.anyio

KEYS = ["key-one-4f1b", "key-two-9c2e"]


async def test_keys_required_on_v1_only(store_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with serve(make_settings(store_root, api_keys=",".join(KEYS))) as client:
        missing = await client.get("/v1/models")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["code"] == "missing_api_key"
        basic = await client.get("/v1/models", headers={"Authorization": "Basic a2V5"})
        assert basic.status_code == 401
        wrong = await client.get("/v1/models", headers={"Authorization": "Bearer key-one-4f1c"})
        assert wrong.status_code == 403
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        for key in KEYS:
            ok = await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200
        generate = await client.post("/v1/models/served/generate", json={"num_samples": 1})
        assert generate.status_code == 401
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "request" in logged
    assert all(key not in logged for key in KEYS)


async def test_no_keys_configured_means_open(store_root: Path) -> None:
    async with serve(make_settings(store_root)) as client:
        assert (await client.get("/v1/models")).status_code == 200
