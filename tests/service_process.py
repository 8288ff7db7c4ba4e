"""`python -m service` in its own process on a free loopback port, always cleaned up.

Shared by the service, hardening and deployment tests: the service as users run it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

__all__ = [
    "REPO",
    "Server",
    "free_port",
    "load_scaled",
    "run_service",
    "seconds_to_notice_failure",
    "wait_ready",
]

REPO = Path(__file__).resolve().parents[1]


def load_scaled(seconds: float) -> float:
    """A time bound met on an idle machine, stretched by how oversubscribed the CPUs are now
    (1-minute load average per core, at least 1): the dev machines are shared."""
    return seconds * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def seconds_to_notice_failure(log: str) -> float:
    """From the first worker's "Application startup failed" to the parent's last log line,
    in the service's JSON log: how long the process took to end once its start had failed."""
    stamps = []
    for line in log.splitlines():
        if line.startswith("{") and ("startup failed" in line or stamps):
            stamps.append(datetime.fromisoformat(json.loads(line)["ts"].replace("Z", "+00:00")))
    assert stamps, "no failed startup in the log:\n" + log[-3000:]
    return (stamps[-1] - stamps[0]).total_seconds()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], logs: Callable[[], str], timeout_s: float = 180.0
) -> None:
    """Until ``url``/readyz answers 200; fails with ``logs()`` if ``proc`` exits or time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, logs()
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "service not ready in time:\n" + logs()
        time.sleep(0.2)


@contextmanager
def run_service(
    store_root: Path,
    log: Path,
    *args: str,
    models: str = "served,plain",
    ready_timeout_s: float = 180.0,
    **env: str,
) -> Iterator[Server]:
    """Start the service, wait for /readyz, yield; SIGTERM (then SIGKILL) on the way out."""
    port = free_port()
    environ = {
        **os.environ,
        "JEM_MODELS": models,
        "JEM_MODEL_STORE": str(store_root),
        "JEM_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=REPO,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, proc, log)
    try:
        wait_ready(server.url, proc, server.logs, ready_timeout_s)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
