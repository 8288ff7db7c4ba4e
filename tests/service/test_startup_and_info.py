"""The app's surface in-process: model listing and info, health, readiness and request ids,
the OpenAPI document, and a startup that fails on a missing or damaged model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import make_settings

pytestmark = pytest.mark.anyio


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


async def _startup_messages(app: object, raises: type[Exception]) -> list[dict[str, object]]:
    """What an ASGI server receives from `app`'s lifespan when it asks it to start (and fails
    with `raises`, which Starlette re-raises after reporting it)."""
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    with pytest.raises(raises):
        await app(scope, receive, send)  # type: ignore[operator]
    return sent


async def test_an_explained_startup_failure_is_not_a_traceback(tmp_path: Path) -> None:
    """The runtime logged which model and why; uvicorn logs the failure's message, so it is
    empty for that failure (no forty-line traceback) and kept for any other."""
    from starlette.routing import Router

    from service import create_app
    from service.runtime import ModelsUnavailable
    from service.startup_errors import ExplainedStartupFailureMiddleware

    app = create_app(make_settings(tmp_path, models=["missing"]))
    sent = await _startup_messages(app, ModelsUnavailable)
    assert sent == [{"type": "lifespan.startup.failed", "message": ""}]

    @asynccontextmanager
    async def broken(app: object) -> AsyncIterator[None]:
        raise OSError("disk on fire")
        yield

    other = await _startup_messages(
        ExplainedStartupFailureMiddleware(Router(lifespan=broken)), OSError
    )
    assert other[0]["type"] == "lifespan.startup.failed"
    assert "Traceback" in str(other[0]["message"])
    assert "disk on fire" in str(other[0]["message"])


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
