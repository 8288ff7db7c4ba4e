"""A SIGKILLed worker's live gauges leave /metrics and its counters keep their totals: one of
issue 18's operational faults, on a real uvicorn process with two workers (the others are in
test_server_faults.py)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from model_store import ManifestDraft, ModelStore
from tests.hardening.conftest import Digits
from tests.service.conftest import png_bytes
from tests.service_process import run_service

pytestmark = pytest.mark.integration

PREDICT = "/v1/models/served/predict"

KEY = "server-faults-key-0123456789"


def _worker_versions(metrics_dir: Path) -> dict[int, set[str]]:
    """pid -> the model versions whose jem_model_info is 1 in that worker's live gauge file."""
    found: dict[int, set[str]] = {}
    for path in metrics_dir.glob("gauge_livemax_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            name, _, labels, _ = json.loads(key)
            if name == "jem_model_info" and value == 1:
                found.setdefault(pid, set()).add(labels["version"])
    return found


def _samples(url: str, name: str) -> list[tuple[dict[str, str], float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return [
        (s.labels, s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    ]


@pytest.mark.slow
def test_a_killed_workers_gauges_leave_and_its_counts_stay(
    store_copy: Path, digits: Digits, tmp_path: Path
) -> None:
    store = ModelStore(store_copy)
    loaded = store.load("served:1")
    draft = loaded.manifest.model_dump(include=set(ManifestDraft.model_fields))
    newest = store.save("served", loaded.model, draft, buffer=loaded.buffer).version
    metrics_dir = tmp_path / "prom"
    with run_service(
        store_copy,
        tmp_path / "server.log",
        "--workers",
        "2",
        models="served",
        JEM_API_KEYS=KEY,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    ) as server:
        deadline = time.monotonic() + 120
        while len(_worker_versions(metrics_dir)) < 2:  # both workers have loaded the model
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.2)
        files = [("files", ("0.png", png_bytes(digits.test_u8[0])))]
        auth = {"Authorization": f"Bearer {KEY}"}
        for _ in range(10):
            r = httpx.post(f"{server.url}{PREDICT}", files=files, headers=auth)
            assert r.status_code == 200, r.text
        r = httpx.post(
            f"{server.url}/v1/admin/models/served/reload",
            json={"ref": "served:1"},
            headers=auth,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        old = [pid for pid, versions in _worker_versions(metrics_dir).items() if "1" in versions]
        assert len(old) == 1, _worker_versions(metrics_dir)
        assert {"1", str(newest)} <= {
            labels["version"] for labels, v in _samples(server.url, "jem_model_info") if v == 1
        }
        predicts = sum(
            v
            for labels, v in _samples(server.url, "jem_requests_total")
            if labels["endpoint"] == "predict"
        )
        assert predicts == 10
        os.kill(old[0], signal.SIGKILL)
        # at the next scrape the dead worker's live gauges are gone (no need to wait for the
        # replacement the supervisor starts: it loads the startup ref, the newest version)
        deadline = time.monotonic() + 30
        while True:
            info = {labels["version"] for labels, v in _samples(server.url, "jem_model_info")}
            if "1" not in info:
                break
            assert time.monotonic() < deadline, (info, _worker_versions(metrics_dir))
            time.sleep(0.2)
        assert info == {str(newest)}
        assert old[0] not in _worker_versions(metrics_dir)
        after = sum(
            v
            for labels, v in _samples(server.url, "jem_requests_total")
            if labels["endpoint"] == "predict"
        )
        assert after == predicts, "the killed worker's requests were lost from the counter"
    assert "metrics of dead worker" in server.logs()
