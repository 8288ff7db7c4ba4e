"""Real uvicorn processes on a free loopback port, and a sampler of their resident memory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

__all__ = ["RssSampler", "Server", "ServerStartError", "free_port", "serve"]

REPO = Path(__file__).resolve().parents[1]


class ServerStartError(RuntimeError):
    """A server process exited or never became ready; its log says why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    log: Path


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise ServerStartError(f"server exited with {proc.returncode}; log tail:\n{tail}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:]
    raise ServerStartError(f"server not ready within {timeout_s:g} s; log tail:\n{tail}")


@contextmanager
def serve(
    module: str,
    env: Mapping[str, str],
    log_dir: Path,
    *,
    cwd: Path = REPO,
    ready_timeout_s: float = 120.0,
) -> Iterator[Server]:
    """Run `python -m <module> --host 127.0.0.1 --port <free>` in `cwd` until the block ends.

    `env` is added to this process's environment (JEM_* settings). The server's stderr goes to a
    log file in `log_dir`, never to a pipe nobody reads.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = log_dir / f"{module.replace('.', '_')}-{port}.log"
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=full_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # its own session, as the peers' servers (bench/peers/harness.py): with the kernel's
            # autogroup scheduling a session shares the CPU with other sessions as one, so a
            # server left in the benchmark's session would share its part with the load generator
            start_new_session=True,
        )
        try:
            _wait_ready(proc, url, log, ready_timeout_s)
            yield Server(url, proc.pid, log)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


class RssSampler:
    """Samples a process's RSS every `interval_s` in a thread; `.peak` is the highest seen.

    `tree`: the sum over the process and all its descendants (servers that fork workers), as
    proportional set size (PSS: a page shared by n processes counts 1/n in each), so that the
    libraries every worker maps (torch) are not counted once per process; RSS where the
    system gives no PSS.
    """

    def __init__(self, pid: int, interval_s: float = 0.05, *, tree: bool = False) -> None:
        self._proc = psutil.Process(pid)
        self._tree = tree
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self.idle = self._rss()
        self.peak = self.idle
        self.samples = 0

    def _rss(self) -> int:
        try:
            procs = [self._proc, *(self._proc.children(recursive=True) if self._tree else [])]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if self._tree:
                    info = proc.memory_full_info()
                    total += int(getattr(info, "pss", info.rss))
                else:
                    total += int(proc.memory_info().rss)
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self.samples += 1
            self._stop.wait(self._interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
