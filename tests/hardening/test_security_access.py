"""Security at the door: API keys compared in constant time and never logged, request limits
configured, a non-root container. What the service reads: test_security.py."""

from __future__ import annotations

import ast
import logging
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

import service.__main__ as service_main
from service import Settings
from service.logs import JsonFormatter
from service.server.protocol import JemHttpToolsProtocol
from tests.service.conftest import make_settings, png_bytes, serve
from tests.service_process import REPO

# ---- API keys: constant time, never logged ------------------------------------------------------


def test_api_keys_are_compared_in_constant_time() -> None:
    source = (REPO / "service" / "auth.py").read_text()
    tree = ast.parse(source)
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "hmac.compare_digest" in calls or "secrets.compare_digest" in calls
    # no ordinary comparison against a key or the presented credentials
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert not names & {"key", "keys", "given"}, ast.unparse(node)


@pytest.mark.anyio
async def test_api_keys_never_logged_or_echoed(store_root: Path) -> None:
    secret = "s3cret-key-0123456789abcdef"
    wrong = "wrong-key-9876543210fedcba"
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(level=logging.DEBUG)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(n) for n in ("", "service", "uvicorn", "fastapi")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    settings = make_settings(store_root, api_keys=f"other-key-aaaaaaaaaaaa,{secret}")
    assert secret not in repr(settings)
    assert secret not in str(settings.model_dump())
    png = png_bytes(torch.zeros((8, 8), dtype=torch.uint8).numpy())
    files = [("files", ("x.png", png, "image/png"))]
    answers = []
    try:
        async with serve(settings) as c:
            for headers, status in (
                ({"Authorization": f"Bearer {secret}"}, 200),
                ({"Authorization": f"Bearer {wrong}"}, 403),
                ({"Authorization": f"Basic {secret}"}, 401),
                ({}, 401),
                ({"Authorization": f"Bearer {secret}x"}, 403),
            ):
                r = await c.post("/v1/models/served/predict", files=files, headers=headers)
                assert r.status_code == status, (headers, r.text)
                answers.append(r.text + str(r.headers))
                if status != 200:
                    assert set(r.json()["error"]) == {"code", "message"}
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    assert any('"status": 403' in line for line in lines), lines[-5:]  # the log was captured
    for text in lines + answers:
        assert secret not in text
        assert wrong not in text


# ---- request size, header size and timeouts are configured ------------------------------------


def test_uvicorn_runs_with_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[uvicorn.Config] = []
    # main() builds a uvicorn.Config (so uvicorn accepts every option the service passes) and
    # hands it to serve, which would start the server
    monkeypatch.setattr(service_main, "serve", lambda config: served.append(config) or 0)
    for var in ("JEM_LIMIT_CONCURRENCY", "JEM_TIMEOUT_KEEP_ALIVE_S", "JEM_GRACEFUL_SHUTDOWN_S"):
        monkeypatch.setenv(var, "1")  # recorded, so that what main() sets is undone afterwards
        monkeypatch.delenv(var)
    with pytest.raises(SystemExit) as exited:
        service_main.main(["--port", "0"])
    assert exited.value.code == 0
    (config,) = served
    # the app limits requests in progress (probes exempt), not uvicorn, and gets the flag's value
    assert config.limit_concurrency is None
    assert 0 < int(os.environ["JEM_LIMIT_CONCURRENCY"]) <= 4096
    assert 0 < Settings().header_timeout_s <= 60
    assert 0 < Settings().body_timeout_s <= 120
    assert 0 < config.timeout_keep_alive <= 75
    assert config.timeout_graceful_shutdown is not None
    assert config.timeout_graceful_shutdown > 0
    # the request line and headers are capped (the protocol answers 431 beyond it)
    assert config.http is JemHttpToolsProtocol
    assert issubclass(JemHttpToolsProtocol, HttpToolsProtocol)
    assert 0 < Settings().max_header_bytes <= 64 * 1024
    assert config.host == "127.0.0.1"  # never every interface unless asked


def test_settings_have_bounded_defaults() -> None:
    from service.settings import Settings

    s = Settings()
    assert 0 < s.max_body_bytes <= 64 * 1024 * 1024
    assert 0 < s.max_image_pixels <= 50_000_000
    assert 0 < s.max_images_per_request <= 1024
    assert 0 < s.request_timeout_s <= 120
    assert 0 < s.queue_size <= 10_000
    assert 0 < s.generation_time_budget_s <= 600


@pytest.mark.anyio
async def test_oversize_bodies_get_413(client: httpx.AsyncClient) -> None:
    from service.settings import Settings

    limit = Settings().max_body_bytes
    big = b"0" * (limit + 1)

    async def chunks() -> Any:  # no Content-Length: the limit must hold on the stream too
        for i in range(0, len(big), 1 << 20):
            yield big[i : i + (1 << 20)]

    for path in ("/v1/models/served/predict", "/v1/models/served/generate"):
        for content in (big, chunks()):
            r = await client.post(
                path, content=content, headers={"content-type": "application/json"}
            )
            assert r.status_code == 413, (path, r.status_code, r.text[:200])
            assert r.json()["error"]["code"] == "body_too_large"
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.anyio
async def test_oversize_headers_get_431(client: httpx.AsyncClient) -> None:
    limit = Settings().max_header_bytes
    for headers in ({"X-Pad": "a" * limit}, {f"X-H{i}": "b" * 64 for i in range(limit // 64)}):
        r = await client.get("/v1/models", headers=headers)
        assert r.status_code == 431, r.text
        assert r.json()["error"]["code"] == "headers_too_large"
    r = await client.get("/v1/models", headers={"X-Pad": "a" * (limit // 2)})
    assert r.status_code == 200
    r = await client.get("/v1/models?" + "q=1&" * (limit // 4 + 1))
    assert r.status_code == 431


# ---- the container ------------------------------------------------------------------------------


def _stages(dockerfile: str) -> list[list[str]]:
    text = re.sub(r"\\\n", " ", dockerfile)
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_container_runs_as_non_root() -> None:
    stages = _stages((REPO / "Dockerfile").read_text())
    assert stages
    final = stages[-1]  # `docker build .` builds the last stage: the serving image
    users = [line.split(None, 1)[1].strip() for line in final if line.upper().startswith("USER ")]
    assert users, "the serving stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    if user.isdigit():
        assert int(user) >= 1000
    # the user exists in the image and the CMD is exec-form
    assert any(user in line for line in final if line.upper().startswith("RUN ")), final
    cmd = [line for line in final if line.upper().startswith("CMD ")]
    assert cmd, final
    assert cmd[-1].split(None, 1)[1].startswith("["), cmd
    for stage in stages:  # every stage that ships a CMD for serving or training drops root
        if any(line.upper().startswith("CMD ") for line in stage):
            assert any(line.upper().startswith("USER ") for line in stage), stage[0]
