"""Multiprocess metrics of worker processes that died without cleaning up after themselves.

With `PROMETHEUS_MULTIPROC_DIR`, every process writes its samples to files named by its pid, and
`/metrics` adds up every file. A worker that exits cleanly removes its live gauges itself
(`Runtime.close` calls `mark_process_dead`); one that is SIGKILLed, OOM-killed or crashes
cannot, and its last gauge values (model version, readiness, queue depth) were exported for
ever. uvicorn's supervisor restarts such a worker but has no child-exit hook (gunicorn's
`child_exit` is where prometheus_client's docs put this call), so the process that answers a
scrape does it: `forget_dead_workers` runs before every multiprocess collection, whichever
supervisor (uvicorn, gunicorn, a container restart with a kept directory) ran the dead worker
and however it died. Counter and histogram files stay: totals never go back.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from prometheus_client import multiprocess

__all__ = ["forget_dead_workers", "process_alive"]

logger = logging.getLogger("service.metrics")

# prometheus_client's file names for gauges in live* modes: gauge_livesum_<pid>.db, ...
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


_PROCFS = Path("/proc/self/stat").exists()


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its supervisor, does not)."""
    if _PROCFS:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        except OSError:
            pass  # hidden by the procfs mount: ask the kernel below
        else:
            return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # state after "(comm)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def forget_dead_workers(directory: str | Path) -> list[int]:
    """Remove the live gauge files of every process in `directory` that no longer runs.

    Returns the pids forgotten. A pid reused by an unrelated process keeps its files until that
    process exits too (pids are not reused quickly on Linux).
    """
    pids = {
        int(m.group(1)) for name in os.listdir(directory) if (m := _LIVE_GAUGE_FILE.match(name))
    }
    dead = sorted(pid for pid in pids if pid != os.getpid() and not process_alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))
        logger.info("metrics of dead worker removed", extra={"pid": pid})
    return dead
