"""`--workers N` on the CPU: workers forked from a parent that has already imported the app.

uvicorn's supervisor starts each worker with multiprocessing's `spawn`: a fresh interpreter that
imports torch, FastAPI, Pillow and the service again, so every worker holds its own copy of
~150 MB of module objects and the libraries' writable pages (serving the default models, two
workers and the supervisor: 597-643 MB PSS, against 249 MB for one process). Forking after
those imports (gunicorn's `preload_app` idea) lets the workers share the parent's pages copy on
write: two forked workers and the parent measured 320 MB (docs/benchmarks-peers.md).

Only the start method changes: the same `uvicorn.supervisors.Multiprocess` runs the workers,
with its health-check pings, restarts of dead workers and graceful shutdown. Each worker
still creates its own app (`service.asgi`) and loads its own models in its lifespan, so no
event loop, batcher thread, gRPC server or model exists in the parent when it forks (the
supervisor's own helper threads are not copied: `fork()` keeps only the calling thread), and
torch's intra-op thread pool is not started there (the parent runs no torch operation).

Not on CUDA: a CUDA context does not survive `fork()` (PyTorch refuses to re-initialise CUDA
in a forked child), so with a CUDA device uvicorn's `spawn` stays.
"""

from __future__ import annotations

import gc
import importlib
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn._subprocess
import uvicorn.supervisors.multiprocess
from prometheus_client import values as prometheus_values

from service.server.balance import BalancedServer, ConnectionBoard

__all__ = ["PRELOAD", "forked_workers"]

# What every worker imports anyway; imported once in the parent, shared after fork.
PRELOAD = ("service.app",)


@contextmanager
def forked_workers() -> Iterator[None]:
    """While the block runs, uvicorn's supervisor starts (and restarts) workers by `fork()`.

    On entry: imports `PRELOAD`, lets prometheus_client see `PROMETHEUS_MULTIPROC_DIR` as set
    now (see below), and moves every object allocated so far into the garbage
    collector's permanent generation (`gc.freeze`), so that a collection in a worker does not
    write to, and so copy, the pages it shares with the parent. The workers accept connections
    in turns (service/server/balance.py), on a board made here.
    """
    for module in PRELOAD:
        importlib.import_module(module)
    # prometheus_client chooses between in-process and file-backed (PROMETHEUS_MULTIPROC_DIR)
    # values once, when imported: here that was before `python -m service` set the directory. A
    # spawned worker imports it again; a forked one inherits the choice, so make it again now.
    value_class = prometheus_values.ValueClass
    prometheus_values.ValueClass = prometheus_values.get_value_class()
    gc.freeze()
    # uvicorn._subprocess.get_subprocess builds every worker from this module-level context
    spawn = uvicorn._subprocess.spawn
    uvicorn._subprocess.spawn = multiprocessing.get_context("fork")  # type: ignore[assignment]
    # ... and every worker's server from this name (`Process.server`)
    supervisors = uvicorn.supervisors.multiprocess
    server_class = supervisors.Server  # type: ignore[attr-defined]
    BalancedServer.board = ConnectionBoard()
    supervisors.Server = BalancedServer  # type: ignore[attr-defined]
    try:
        yield
    finally:
        supervisors.Server = server_class  # type: ignore[attr-defined]
        BalancedServer.board = None
        uvicorn._subprocess.spawn = spawn
        prometheus_values.ValueClass = value_class
        gc.unfreeze()
