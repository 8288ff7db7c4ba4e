"""`--workers N` on the CPU forks the workers from a parent that has imported the app
(service/server/prefork.py): they share its pages, serve, and a killed one is replaced by a
forked one."""

from __future__ import annotations

import gc
import os
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
import uvicorn._subprocess

from service.server.prefork import forked_workers
from tests.service._metrics import requests_total, two_workers
from tests.service.conftest import Digits, png_bytes
from tests.service_process import run_service

PREDICT = "/v1/models/served/predict"


def test_forked_workers_is_undone_on_exit() -> None:
    before = uvicorn._subprocess.spawn
    with forked_workers():
        assert uvicorn._subprocess.spawn.get_start_method() == "fork"
        assert gc.get_freeze_count() > 0
    assert uvicorn._subprocess.spawn is before
    assert before.get_start_method() == "spawn"
    assert gc.get_freeze_count() == 0


def _workers(parent: psutil.Process, timeout_s: float = 120) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while True:
        children = [p for p in parent.children() if p.is_running()]
        if len(children) == 2:
            return children
        assert time.monotonic() < deadline, f"{len(children)} workers"
        time.sleep(0.2)


@pytest.mark.integration
@pytest.mark.slow
def test_workers_are_forked_share_the_parents_pages_and_come_back(
    store_root: Path, digits: Digits, tmp_path: Path
) -> None:
    with two_workers(store_root, tmp_path, models="served") as (server, _):
        parent = psutil.Process(server.proc.pid)
        workers = _workers(parent)
        # forked: the parent's command line, not multiprocessing's `spawn_main` interpreter
        assert all(w.cmdline() == parent.cmdline() for w in workers), [w.cmdline() for w in workers]
        blob = [("files", ("0.png", png_bytes(digits.test_u8[0]), "image/png"))]
        for _ in range(20):  # a new connection each: the kernel spreads them over the workers
            assert httpx.post(f"{server.url}{PREDICT}", files=blob).status_code == 200
        for w in workers:
            info = w.memory_full_info()
            # torch, FastAPI and the service are the parent's pages: a worker owns a small
            # part of what it maps (a spawned one owns most of its Python heap: ~0.6 of RSS)
            print(f"\nworker {w.pid}: USS {info.uss / 2**20:.0f} MB of RSS {info.rss / 2**20:.0f}")
            assert info.uss < 0.4 * info.rss, info
        os.kill(workers[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:  # uvicorn's supervisor replaces it, by fork again
            now = _workers(parent)
            if workers[0].pid not in {w.pid for w in now}:
                break
            assert time.monotonic() < deadline, server.logs()[-3000:]
            time.sleep(0.2)
        assert all(w.cmdline() == parent.cmdline() for w in now)
        deadline = time.monotonic() + 120
        ok = 0
        while ok < 10:
            r = httpx.post(f"{server.url}{PREDICT}", files=blob)
            ok = ok + 1 if r.status_code == 200 else 0
            assert time.monotonic() < deadline, r.text


@pytest.mark.integration
@pytest.mark.slow
def test_forked_workers_share_metrics_in_the_directory_the_service_made(
    store_root: Path, digits: Digits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No PROMETHEUS_MULTIPROC_DIR given: `python -m service` makes one after prometheus_client
    was imported, and forked workers must still write their samples there."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with run_service(store_root, tmp_path / "server.log", "--workers", "2", models="served") as s:
        _workers(psutil.Process(s.proc.pid))
        blob = [("files", ("0.png", png_bytes(digits.test_u8[0]), "image/png"))]
        ok, deadline = 0, time.monotonic() + 120
        while ok < 20:  # a new connection each; a worker still loading answers 503
            status = httpx.post(f"{s.url}{PREDICT}", files=blob).status_code
            assert status in (200, 503), status
            ok += status == 200
            assert time.monotonic() < deadline, s.logs()[-3000:]
        text = httpx.get(f"{s.url}/metrics").text
        # the flag reaches every worker's settings: Triton's model configuration counts them
        counts = {
            httpx.get(f"{s.url}/v2/models/served/config").json()["instance_group"][0]["count"]
            for _ in range(8)
        }
    assert requests_total(text, "predict", "200") == 20, text[-3000:]
    assert counts == {2}


@pytest.mark.integration
@pytest.mark.slow
def test_workers_stop_when_their_supervisor_is_killed(store_root: Path, tmp_path: Path) -> None:
    """SIGKILL (or the OOM killer) on the supervisor leaves no worker serving unsupervised."""
    with run_service(store_root, tmp_path / "server.log", "--workers", "2", models="served") as s:
        workers = _workers(psutil.Process(s.proc.pid))
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, [w.pid for w in alive]
        assert "the supervisor (pid" in s.logs()
