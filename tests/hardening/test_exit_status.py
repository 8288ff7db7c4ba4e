"""How `python -m service` ends: a failed start exits 3 promptly whatever its other workers are
doing; a drained stop on SIGTERM exits 0, without a "Terminated" from make or the shell."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.service_process import (
    REPO,
    free_port,
    load_scaled,
    run_service,
    seconds_to_notice_failure,
    wait_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOW_START_S = 30


def test_a_failed_worker_is_noticed_while_another_is_still_starting(tmp_path: Path) -> None:
    """Two spawned workers on a broken store, the second slow to start: uvicorn's supervisor
    pinged the slow one (waiting up to JEM_WORKER_HEALTHCHECK_TIMEOUT_S for its answer) before
    it looked at the failed one again, so the process ran on for the whole slow start."""
    empty = tmp_path / "empty-store"
    empty.mkdir()
    env = {
        **os.environ,
        "JEM_MODEL_STORE": str(empty),
        "JEM_MODELS": "digits-jem",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "PYTHONPATH": str(REPO),
        "JEM_TEST_FIRST_WORKER": str(tmp_path / "first-worker"),
        "JEM_TEST_SLOW_START_S": str(SLOW_START_S),
    }
    command = [sys.executable, str(REPO / "tests/hardening/_spawned_workers.py")]
    start = time.monotonic()
    done = subprocess.run(
        [*command, "--port", "0", "--workers", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.monotonic() - start
    noticed = seconds_to_notice_failure(done.stderr)
    print(
        f"\nspawned workers, one slow: exit {done.returncode} after {seconds:.1f} s, "
        f"{noticed:.1f} s after the failure"
    )
    assert done.returncode == 3, done.stderr[-3000:]
    assert "model 'digits-jem' cannot be served: no model named 'digits-jem'" in done.stderr
    assert "Traceback" not in done.stderr  # the one line says it (service/startup_errors.py)
    assert noticed < min(load_scaled(5), SLOW_START_S / 2), done.stderr[-3000:]


def test_a_drained_stop_on_sigterm_exits_0(store_root: Path, tmp_path: Path) -> None:
    """uvicorn raised SIGTERM again after draining, so the process died of it (-15, 143 in a
    shell) after a clean stop; with --workers N it exited 0, and as PID 1 in a container too."""
    with run_service(store_root, tmp_path / "service.log") as server:
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=60)
        assert code == 0, server.logs()[-3000:]
        assert '"msg": "stopped"' in server.logs()


def test_make_serve_stops_on_sigterm_without_terminated(tmp_path: Path) -> None:
    """`make serve` (the shipped models), then SIGTERM to its process group, as `kill %1` or a
    process manager sends it: make printed "make: *** [Makefile:..: serve] Terminated" (the
    server died of the signal) after a clean stop. The target still installs first."""
    dry_run = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "serve"], cwd=REPO, capture_output=True, text=True
    )
    lines = dry_run.stdout.splitlines()
    install = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert install < next(i for i, line in enumerate(lines) if "-m service" in line), lines
    port, log = free_port(), tmp_path / "make-serve.log"
    env = {**os.environ, "JEM_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    with log.open("wb") as out:
        make = subprocess.Popen(
            ["make", "serve", f"PORT={port}"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}", make, lambda: log.read_text(errors="replace"))
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=60)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait(timeout=10)
    text = log.read_text(errors="replace")
    assert '"msg": "stopped"' in text, text[-3000:]
    assert "Terminated" not in text, text[-3000:]
