"""Model faults: a new version swapped in at run time through the admin route (behind the API
key) only after its checksums and a test forward pass succeed; corrupted, incompatible and
poisoned checkpoints are refused while the old version keeps serving; no request fails during a
good swap."""

from __future__ import annotations

import asyncio
import hashlib
import json
import pickle
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import torch

from model_store import ManifestDraft, ModelStore
from tests.hardening.conftest import Digits
from tests.service.conftest import make_settings, png_bytes, serve

pytestmark = pytest.mark.anyio

KEY = "admin-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
RELOAD = "/v1/admin/models/served/reload"


def _publish(root: Path, *, scale: float = 1.0, nan: bool = False) -> int:
    """Publish a new version of `served` built from version 1 (weights scaled, or NaN)."""
    store = ModelStore(root)
    loaded = store.load("served:1")
    model = loaded.model
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
            if nan:
                p.fill_(float("nan"))
    draft = loaded.manifest.model_dump(include=set(ManifestDraft.model_fields))
    return store.save("served", model, draft, buffer=loaded.buffer).version


def _forge(root: Path, version: int, edit: dict[str, object]) -> None:
    """Copy version 1 to `version` and edit its manifest by hand (checksums stay valid)."""
    src, dst = root / "served" / "1", root / "served" / str(version)
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["version"] = version
    for key, value in edit.items():
        section, _, field = key.partition(".")
        if field:
            manifest[section][field] = value
        else:
            manifest[key] = value
    (dst / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
async def admin(store_copy: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(store_copy, models=["served"], api_keys=KEY)
    async with serve(settings) as client:
        client.headers.update(AUTH)
        yield client


def _upload(digits: Digits, i: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"{i}.png", png_bytes(digits.test_u8[i]), "image/png"))]


async def _version(client: httpx.AsyncClient, digits: Digits) -> int:
    r = await client.post("/v1/models/served/predict", files=_upload(digits, 0))
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


async def test_good_swaps_under_traffic_lose_no_request(
    admin: httpx.AsyncClient, store_copy: Path, digits: Digits
) -> None:
    v2 = _publish(store_copy, scale=1.5)  # same decisions, sharper logits: a visible change
    stop = asyncio.Event()
    results: list[tuple[int, int | None]] = []

    async def traffic(worker: int) -> None:
        i = worker
        while not stop.is_set():
            i = (i + 7) % 100
            r = await admin.post("/v1/models/served/predict", files=_upload(digits, i))
            version = r.json().get("version") if r.status_code == 200 else None
            results.append((r.status_code, version))

    workers = [asyncio.create_task(traffic(w)) for w in range(8)]
    swaps = []
    try:
        await asyncio.sleep(0.1)
        for ref in [f"served:{v2}", "served:1", "served", "served:1", f"served:{v2}", "served:1"]:
            r = await admin.post(RELOAD, json={"ref": ref})
            assert r.status_code == 200, r.text
            swaps.append(r.json())
            await asyncio.sleep(0.15)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    statuses = [s for s, _ in results]
    versions = {v for _, v in results}
    print(f"\n{len(swaps)} swaps under traffic: {len(results)} requests, statuses {set(statuses)}")
    assert statuses, "no traffic"
    assert set(statuses) == {200}, [s for s in statuses if s != 200][:5]
    assert versions == {1, v2}, versions
    assert [s["version"] for s in swaps] == [v2, 1, v2, 1, v2, 1]
    assert await _version(admin, digits) == 1
    assert (await admin.get("/readyz")).status_code == 200
    info = (await admin.get("/v1/models/served")).json()
    assert info["version"] == 1


async def test_reload_without_ref_picks_up_the_newest_version(
    admin: httpx.AsyncClient, store_copy: Path, digits: Digits
) -> None:
    assert await _version(admin, digits) == 1
    v2 = _publish(store_copy)
    r = await admin.post(RELOAD)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == v2
    assert r.json()["previous_version"] == 1
    assert await _version(admin, digits) == v2


def _flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _plant_pickle(root: Path, version: int, marker: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple[object, ...]:
            return (open, (str(marker), "w"))

    data = pickle.dumps(Payload())
    vdir = root / "served" / str(version)
    (vdir / "weights.safetensors").write_bytes(data)
    manifest = json.loads((vdir / "manifest.json").read_text())
    digest = hashlib.sha256(data).hexdigest()
    manifest["files"]["weights.safetensors"] = {"sha256": digest, "size": len(data)}
    (vdir / "manifest.json").write_text(json.dumps(manifest))


async def test_bad_checkpoints_are_refused_while_the_old_version_serves(
    admin: httpx.AsyncClient, store_copy: Path, digits: Digits, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    flipped = _publish(store_copy)
    _flip_byte(store_copy / "served" / str(flipped) / "weights.safetensors")
    nan = _publish(store_copy, nan=True)
    _forge(store_copy, 20, {"backbone.kwargs": {"width": 32}})  # weights of another shape
    _forge(store_copy, 21, {"input_spec.height": 16, "input_spec.width": 16})
    _forge(store_copy, 22, {"class_names": [str(i) for i in range(10)][::-1]})
    _forge(store_copy, 23, {"format_version": 999})
    _forge(store_copy, 24, {})
    _plant_pickle(store_copy, 24, marker)
    (store_copy / "served" / "25").mkdir()  # a version directory without a manifest
    cases = {
        f"served:{flipped}": "sha256",
        f"served:{nan}": "forward pass",
        "served:20": "",
        "served:21": "input",
        "served:22": "class",
        "served:23": "",
        "served:24": "safetensors",
        "served:25": "",
        "served:99": "",
    }
    for ref, needle in cases.items():
        r = await admin.post(RELOAD, json={"ref": ref})
        assert r.status_code in (404, 409), (ref, r.status_code, r.text)
        error = r.json()["error"]
        assert set(error) == {"code", "message"}
        assert needle in error["message"], (ref, error)
        if r.status_code == 409:
            assert error["code"] == "reload_refused"
            assert "still serving served:1" in error["message"], error
            assert ".;" not in error["message"], error  # one sentence: the store's, then ours
        # the old version keeps serving, correctly
        assert await _version(admin, digits) == 1, ref
        assert (await admin.get("/readyz")).status_code == 200
    assert not marker.exists(), "the planted pickle was executed"
    print(f"\nbad checkpoints refused: {len(cases)}")


async def test_reload_is_behind_the_api_key(store_copy: Path) -> None:
    async with serve(make_settings(store_copy, models=["served"], api_keys=KEY)) as client:
        assert (await client.post(RELOAD)).status_code == 401
        wrong = {"Authorization": "Bearer not-the-key"}
        assert (await client.post(RELOAD, headers=wrong)).status_code == 403
        assert (await client.post(RELOAD, headers=AUTH)).status_code == 200
    # without configured keys the admin route is closed, not open to everyone
    async with serve(make_settings(store_copy, models=["served"])) as client:
        r = await client.post(RELOAD)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "admin_disabled"


async def test_reload_refs_cannot_escape_or_cross_models(admin: httpx.AsyncClient) -> None:
    for ref in ["../plain", "../../etc/passwd", "plain:1", "served/../plain", "/etc", "served:0"]:
        r = await admin.post(RELOAD, json={"ref": ref})
        assert r.status_code in (404, 409, 422), (ref, r.text)
        assert set(r.json()["error"]) == {"code", "message"}
    r = await admin.post("/v1/admin/models/nope/reload")
    assert r.status_code == 404
    r = await admin.post("/v1/admin/models/..%2F..%2Fetc/reload")
    assert r.status_code == 404
