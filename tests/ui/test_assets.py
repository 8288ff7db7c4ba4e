"""The page and docs over HTTP (no browser): URLs under root_path, content types, caching,
CSP, and the vendored files against their record."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from service import Settings, create_app
from service.__main__ import main as service_main
from service.ui.assets import PAGE_CSP, VENDOR_DIR, vendored
from tests.service_process import REPO

pytestmark = pytest.mark.anyio

URL_ATTRIBUTE = re.compile(r'(?:src|href)="([^"]*)"')


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _client(root_path: str) -> httpx.AsyncClient:
    """Requests carry the prefix in their path, as uvicorn --root-path passes them on: it
    prepends the prefix to the path that the proxy stripped. No lifespan: no model is loaded."""
    app = create_app(Settings(models=["digits-jem"], warmup=False))
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture(params=["", "/jem"], ids=["no-prefix", "prefix"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with _client(request.param) as c:
        yield c, request.param


async def test_page_urls_carry_the_root_path(client: tuple[httpx.AsyncClient, str]) -> None:
    c, root = client
    r = await c.get(f"{root}/ui/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-security-policy"] == PAGE_CSP
    assert r.headers["cache-control"] == "no-cache"
    assert f'data-root="{root}"' in r.text
    urls = URL_ATTRIBUTE.findall(r.text)
    assert len(urls) >= 5
    assert all(u.startswith(f"{root}/") for u in urls), urls
    for url in urls:
        assert (await c.get(url)).status_code == 200, url
    home = await c.get(f"{root}/")
    assert home.status_code == 307
    assert home.headers["location"] == f"{root}/ui/"


@pytest.mark.parametrize(
    ("path", "content_type", "cache"),
    [
        ("/ui/static/app.js", "text/javascript; charset=utf-8", "no-cache"),
        ("/ui/static/style.css", "text/css; charset=utf-8", "no-cache"),
        ("/ui/static/favicon.svg", "image/svg+xml", "no-cache"),
        ("/ui/vendor/VENDOR.json", "application/json", "public, max-age=31536000, immutable"),
        (
            "/ui/vendor/swagger-ui-dist-5.35.0/swagger-ui.css",
            "text/css; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        (
            "/ui/vendor/redoc-2.5.4/LICENSE",
            "text/plain; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
    ],
)
async def test_static_files_headers(path: str, content_type: str, cache: str) -> None:
    async with _client("") as c:
        r = await c.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"] == content_type
        assert r.headers["cache-control"] == cache
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == PAGE_CSP
        again = await c.get(path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["cache-control"] == cache
        assert again.headers["content-security-policy"] == PAGE_CSP


async def test_missing_static_file_is_a_json_404() -> None:
    async with _client("") as c:
        r = await c.get("/ui/static/nothing.js")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"


def _inline_script_hashes(html: str) -> set[str]:
    return {
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    }


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_docs_pages_load_nothing_from_outside(
    path: str, client: tuple[httpx.AsyncClient, str]
) -> None:
    c, root = client
    r = await c.get(root + path)
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "http" not in csp
    assert "*" not in csp
    assert "default-src 'none'" in csp
    assert "'unsafe-eval'" not in csp
    # the inline start-up script runs by its hash, and nothing else inline does
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src
    assert _inline_script_hashes(r.text) <= set(script_src.split())
    for url in URL_ATTRIBUTE.findall(r.text):
        assert url.startswith(f"{root}/ui/"), url
        assert (await c.get(url)).status_code == 200, url
    assert "googleapis" not in r.text
    assert "cdn" not in r.text


async def test_openapi_lists_no_page() -> None:
    async with _client("") as c:
        paths = set((await c.get("/openapi.json")).json()["paths"])
    assert not {p for p in paths if p.startswith(("/ui", "/docs", "/redoc")) or p == "/"}


def test_vendored_files_match_their_record() -> None:
    packages = vendored()
    assert set(packages) == {"swagger-ui-dist", "redoc"}
    folders = {p.name for p in VENDOR_DIR.iterdir() if p.is_dir()}
    assert folders == {v.directory for v in packages.values()}
    for v in packages.values():
        folder = VENDOR_DIR / v.directory
        assert v.directory == f"{v.name}-{v.version}"
        assert v.integrity.startswith("sha512-")
        assert v.license in {"MIT", "Apache-2.0"}
        assert "LICENSE" in v.files
        assert {f.name for f in folder.iterdir()} == set(v.files)
        for name, digest in v.files.items():
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("bad", ["jem", "/jem/", "/", "/a b"])
def test_root_path_setting_is_checked(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValidationError):
        Settings(root_path=bad)
    assert Settings(root_path="/jem/v1").root_path == "/jem/v1"
    with pytest.raises(SystemExit) as exit_info:  # the flag: a one-line error, exit code 2
        service_main(["--root-path", bad])
    assert exit_info.value.code == 2
    assert "argument --root-path" in capsys.readouterr().err


@pytest.mark.slow
def test_the_wheel_carries_every_ui_file(tmp_path: Path) -> None:
    """What `pip install .` (the Docker image) installs: pyproject's package-data. Built from a
    copy, so that setuptools' build/ folder is not left in the checkout."""
    src = tmp_path / "src"
    junk = shutil.ignore_patterns("__pycache__", "models", "*.egg-info")
    for name in ("jem", "model_store", "service", "training"):
        shutil.copytree(REPO / name, src / name, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*command, "-w", str(tmp_path), str(src)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("service/ui/")}
    in_tree = {
        str(p.relative_to(REPO))
        for p in (REPO / "service" / "ui").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert in_wheel == in_tree
