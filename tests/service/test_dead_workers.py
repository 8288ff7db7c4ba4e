"""`forget_dead_workers`: a dead process's live gauge files go, its counters and everyone
else's files stay; a zombie (exited, not yet reaped by its supervisor) counts as dead."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from service.server.workers import forget_dead_workers, process_alive


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_dead_workers_live_gauges_are_removed(tmp_path: Path) -> None:
    dead, me = _exited_pid(), os.getpid()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as sibling:
        try:
            names = [
                f"{kind}_{pid}.db"
                for pid in (dead, me, sibling.pid)
                for kind in ("gauge_livemax", "gauge_livemin", "gauge_livesum", "counter")
            ]
            for name in names:
                (tmp_path / name).write_bytes(b"")
            assert forget_dead_workers(tmp_path) == [dead]
            assert forget_dead_workers(tmp_path) == []
        finally:
            sibling.kill()
    left = sorted(p.name for p in tmp_path.iterdir())
    gone = {f"gauge_{mode}_{dead}.db" for mode in ("livemax", "livemin", "livesum")}
    assert left == sorted(set(names) - gone)  # the dead worker's counter stays


def test_a_zombie_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while process_alive(proc.pid):  # exited but not waited for: a zombie
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert Path(f"/proc/{proc.pid}").exists() or sys.platform != "linux"
    proc.wait()
    assert not process_alive(proc.pid)
    assert process_alive(os.getpid())
