"""Security of what the service reads: no pickle anywhere (in the source, or planted in a
store), and model names stay inside the store. API keys, limits and the container:
test_security_access.py."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import torch

from model_store import ModelStore, StoreError
from model_store.errors import InvalidModelName
from service import Settings, create_app
from tests.service.conftest import make_settings, png_bytes
from tests.service_process import REPO

PACKAGES = ("jem", "model_store", "service", "training", "bench")
MARKER_NAME = "pwned"

# ---- no pickle loading anywhere ----------------------------------------------------------------

_UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _pickle_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in _UNPICKLING_MODULES:
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in _UNPICKLING_MODULES:
                yield node.lineno, f"from {node.module} import ..."
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in ("torch.load", "torch.serialization.load", "torch.jit.load"):
                yield node.lineno, name
            if name.endswith(("read_pickle", "Unpickler")):
                yield node.lineno, name
            for kw in node.keywords:
                if (
                    kw.arg == "allow_pickle"
                    and isinstance(kw.value, ast.Constant)
                    and kw.value.value is not False
                ):
                    yield node.lineno, f"{name}(allow_pickle={kw.value.value!r})"


def test_no_pickle_loading_in_the_source() -> None:
    files = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]
    assert len(files) > 20, files
    found = [
        f"{path.relative_to(REPO)}:{line}: {what}"
        for path in files
        for line, what in _pickle_uses(ast.parse(path.read_text(), str(path)))
    ]
    assert not found, "pickle loading found:\n" + "\n".join(found)


def test_the_source_scan_catches_pickle_loading() -> None:
    bad = (
        "import pickle\nimport torch, numpy as np\n"
        "torch.load('w.pt')\nnp.load('a.npy', allow_pickle=True)\npickle.loads(b'')\n"
    )
    assert len(list(_pickle_uses(ast.parse(bad)))) == 3


class _Payload:
    """Unpickling this creates a marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _plant(store_root: Path, name: str, filename: str, data: bytes) -> None:
    """Replace a file of name:1 and fix up the manifest's checksum, as a forger would."""
    version = store_root / name / "1"
    (version / filename).write_bytes(data)
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"][filename] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (version / "manifest.json").write_text(json.dumps(manifest))


def _torch_save_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"weights": _Payload(marker)}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save zip"])
@pytest.mark.parametrize("filename", ["weights.safetensors", "buffer.safetensors"])
@pytest.mark.anyio
async def test_planted_pickle_is_refused_and_never_run(
    store_copy: Path, tmp_path: Path, kind: str, filename: str
) -> None:
    marker = tmp_path / MARKER_NAME
    payload = pickle.dumps(_Payload(marker)) if kind == "raw pickle" else _torch_save_pickle(marker)
    _plant(store_copy, "served", filename, payload)
    store = ModelStore(store_copy)
    for verify in (True, False):
        with pytest.raises(StoreError, match="not a safetensors file"):
            store.load("served", verify=verify)
    # the service's own load path: never ready, and /readyz says why
    reason = await _load_failure(make_settings(store_copy, models=["served"]))
    assert "not a safetensors file" in reason, reason
    assert not marker.exists(), "the planted pickle was executed"


async def _load_failure(settings: Settings) -> str:
    """Start the app; wait until its loader gives up; return /readyz's reason."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            with anyio.fail_after(60):
                while True:
                    r = await c.get("/readyz")
                    assert r.status_code == 503, r.text
                    message = str(r.json()["error"]["message"])
                    if "failed to load" in message:
                        return message
                    await anyio.sleep(0.02)


# ---- names cannot escape the store root --------------------------------------------------------

ESCAPES = [
    "..%2F..%2Fetc%2Fpasswd",
    "..%2f..%2fetc",
    "%2e%2e%2F%2e%2e%2Fetc",
    "..",
    "%2e%2e",
    "..%5C..%5Cwindows",
    "%2Fetc%2Fpasswd",
    "served%00",
    "served%2F..%2F..%2Fplain",
    "~root",
    "served%3A..%2F1",
]


@pytest.mark.anyio
async def test_model_names_in_urls_cannot_escape(client: httpx.AsyncClient) -> None:
    png = png_bytes(torch.zeros((8, 8), dtype=torch.uint8).numpy())
    for name in ESCAPES:
        for method, path in (
            ("POST", f"/v1/models/{name}/predict"),
            ("POST", f"/v1/models/{name}/ood"),
            ("GET", f"/v1/models/{name}"),
        ):
            files = [("files", ("x.png", png, "image/png"))] if method == "POST" else None
            r = await client.request(method, path, files=files)
            assert r.status_code == 404, (path, r.status_code, r.text)
            body = r.json()
            assert set(body["error"]) == {"code", "message"}, body
            assert "root:" not in r.text  # nothing of /etc/passwd, ever


def test_store_refuses_names_that_escape(store_copy: Path, tmp_path: Path) -> None:
    store = ModelStore(store_copy)
    outside = tmp_path / "outside"
    outside.mkdir()
    (store_copy / "link").symlink_to(outside, target_is_directory=True)
    for ref in ["../outside", "../../etc", "/etc/passwd", "a/b", "..", "served/../plain", "link"]:
        with pytest.raises(StoreError):
            store.load(ref)
    with pytest.raises(InvalidModelName):
        store.load("link")  # a symlink leading out of the root is refused, not followed
    assert "link" not in store.list_models()
