"""`python -m service [--store DIR] [--model REF ...] [--host H] [--port P] [--workers N]`.

Serves with uvicorn. Every option defaults to its `JEM_*` environment variable (see
docs/service.md); `--store` and `--model` are handed to the app (every worker) as
`JEM_MODEL_STORE` and `JEM_MODELS`. Exit status 3 (uvicorn's STARTUP_FAILURE) when the
server, or with --workers any worker, fails to start, e.g. on a broken model store
(JEM_EXIT_ON_LOAD_ERROR): a container then stops at once, failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process as UvicornProcess

from service.device import Placement
from service.logs import log_config
from service.server.prefork import forked_workers
from service.server.protocol import JemHttpToolsProtocol
from service.server.workers import process_alive
from service.settings import ROOT_PATH_PATTERN, Settings, misspelt_variables
from service.v2 import RESERVED_ENV, GrpcPortInUseError, grpc_unavailable, reserve_grpc_port

__all__ = ["main", "serve"]


def _root_path(value: str) -> str:
    if not re.fullmatch(ROOT_PATH_PATTERN, value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: give '' or a path like /jem (leading slash, none at the end)"
        )
    return value


def _parser(s: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service", description=__doc__, allow_abbrev=False)
    p.add_argument(
        "--store", default=None, help="model store root (JEM_MODEL_STORE; default: the shipped one)"
    )
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        default=None,
        metavar="REF",
        help="a model to serve, 'name', 'name:3' or 'name:alias' (repeatable; JEM_MODELS)",
    )
    p.add_argument("--host", default=s.host, help="bind address (JEM_HOST)")
    p.add_argument("--port", type=int, default=s.port, help="port (JEM_PORT)")
    p.add_argument(
        "--workers", type=int, default=s.workers, help="processes; metrics are shared (JEM_WORKERS)"
    )
    p.add_argument(
        "--limit-concurrency",
        type=int,
        default=s.limit_concurrency,
        help="requests in progress before 503; probes exempt (JEM_LIMIT_CONCURRENCY)",
    )
    p.add_argument(
        "--timeout-keep-alive",
        type=int,
        default=s.timeout_keep_alive_s,
        help="idle keep-alive seconds (JEM_TIMEOUT_KEEP_ALIVE_S)",
    )
    p.add_argument(
        "--graceful-shutdown-s",
        type=int,
        default=s.graceful_shutdown_s,
        help="on SIGTERM, seconds to finish in-flight requests (JEM_GRACEFUL_SHUTDOWN_S)",
    )
    p.add_argument(
        "--root-path",
        default=s.root_path,
        type=_root_path,
        help="path prefix that a proxy in front strips, e.g. /jem (JEM_ROOT_PATH)",
    )
    return p


def _prepare_multiprocess_dir(workers: int) -> None:
    """Several workers need PROMETHEUS_MULTIPROC_DIR; create one if unset, and start it empty."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory is None and workers > 1:
        directory = tempfile.mkdtemp(prefix="jem-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    if directory is not None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # left by an earlier run: would be added to this one's
            stale.unlink()


def serve(config: uvicorn.Config) -> int:
    """Run the server as `uvicorn.run` does; return the process's exit status.

    uvicorn's supervisor stops every worker once one fails its startup, but then returns as
    after a SIGTERM, so the parent would exit 0. Here a failed start gives STARTUP_FAILURE.
    Several workers on the CPU are forked from this process after it imported the app
    (service/server/prefork.py) rather than spawned as fresh interpreters.
    """
    if config.workers == 1:
        server = uvicorn.Server(config)
        # uvicorn drains on SIGTERM, then raises the signal again once its own handler is gone:
        # the process died of it (status 143; make and shells print "Terminated") after a clean
        # stop. With the server's handler left in place the second one lands there, and a
        # drained stop exits 0, as the supervisor of --workers N does and as PID 1 in a container.
        previous = signal.signal(signal.SIGTERM, server.handle_exit)
        try:
            server.run()  # a failed startup exits STARTUP_FAILURE from inside
        finally:
            signal.signal(signal.SIGTERM, previous)
        return 0 if server.started else STARTUP_FAILURE
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_workers, args=(supervisor, stop), daemon=True)
    with forked_workers() if _forkable() else contextlib.nullcontext():
        watcher.start()
        try:
            supervisor.run()
        finally:
            stop.set()
    failed = any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes)
    return STARTUP_FAILURE if failed else 0


def _forkable() -> bool:
    """Whether workers may be forked: not when serving on CUDA (its context does not survive
    `fork()`). The settings were validated, and the device checked, before."""
    settings = Settings()
    return not Placement.resolve(settings.device, settings.precision).cuda


def _watch_workers(supervisor: Multiprocess, stop: threading.Event) -> None:
    """Every 0.2 s: close the parent's copy of each started worker's end of its health-check
    pipe, and once a worker has failed its startup, stop the supervisor and the other workers.

    uvicorn's parent keeps both pipe ends open, so a ping sent to a worker that is exiting (a
    failed startup) never sees end-of-file and waits out JEM_WORKER_HEALTHCHECK_TIMEOUT_S (60 s)
    before the parent notices; the worker holds its own copy from the moment it has a pid. And
    the supervisor checks its workers one at a time, each with a ping that waits up to that
    timeout for an answer: a worker still starting (spawned, importing torch or initialising
    CUDA) answers only once started, so a failure in another went unseen until then. SIGTERM
    ends a starting worker at once (uvicorn's handlers are not installed yet) or after its
    startup, and the pipes of a dead worker answer the ping at once.

    This thread never reaps a worker (`exitcode` does, by `waitpid`): with two threads reaping,
    one of them finds the child gone, takes it for running, and uvicorn's `terminate` then
    signals a pid that no longer exists (ProcessLookupError: the parent exited 1, not 3).
    """
    while not stop.wait(0.2):
        workers = list(supervisor.processes)
        for worker in workers:
            if worker.pid is not None:
                worker.child_conn.close()  # idempotent
        if supervisor.should_exit.is_set():
            continue
        if any(_failed_startup(worker) for worker in workers):
            supervisor.should_exit.set()  # before the signals: a dead worker is not restarted
            for worker in workers:
                if worker.pid is not None and process_alive(worker.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGTERM)


def _failed_startup(worker: UvicornProcess) -> bool:
    """Whether `worker` exited with STARTUP_FAILURE, read without reaping it (`WNOWAIT`)."""
    pid = worker.pid
    if pid is None:
        return False
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped by the supervisor already: multiprocessing holds the code
        return worker.process.exitcode == STARTUP_FAILURE
    return info is not None and info.si_code == os.CLD_EXITED and info.si_status == STARTUP_FAILURE


def _settings() -> Settings:
    """The settings from JEM_* variables; a bad one is a one-line error and exit 2, naming the
    setting (its variable is JEM_ and the name in capitals) and what was wrong."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        print(f"python -m service: error: {problems}", file=sys.stderr)
        sys.exit(2)
    return settings


def _problem(error: Any) -> str:
    """One settings error as `JEM_<NAME>=<value>: <what is wrong>` (keys never echoed)."""
    loc = error.get("loc") or ()
    if not loc:
        return f"settings: {error['msg']}"
    field = str(loc[0])
    given = error.get("input")
    shown = f"={given!r}" if isinstance(given, str) and field != "api_keys" else ""
    return f"JEM_{field.upper()}{shown}: {error['msg']}"


def main(argv: list[str] | None = None, *, app: str = "service.asgi:app") -> None:
    """`python -m service`: parse `argv`, check the settings and the device, and `serve` the
    ASGI `app` ("module:attribute", imported by uvicorn in each worker). Exits with the
    server's status; a bad flag or device exits 2 with a one-line error."""
    settings = _settings()  # fail fast on a bad JEM_* variable, before forking workers
    for hint in misspelt_variables(os.environ):
        print(f"python -m service: warning: {hint}", file=sys.stderr)
    args = _parser(settings).parse_args(argv)
    # the app reads its settings from the environment, in this process and in every worker
    if args.store is not None:
        os.environ["JEM_MODEL_STORE"] = str(Path(args.store).resolve())
    if args.models:
        os.environ["JEM_MODELS"] = ",".join(args.models)
    if args.store is not None or args.models:
        _settings()  # and validated with them, before forking workers
    try:  # a device that is not here: one line and exit 2, before uvicorn starts
        Placement.resolve(settings.device, settings.precision)
    except ValueError as exc:
        print(f"python -m service: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if settings.grpc_port is not None and (problem := grpc_unavailable()) is not None:
        # a failed start (exit 3, as the app's lifespan would), but one line, not a traceback
        print(f"python -m service: error: {problem}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    os.environ.setdefault("JEM_GRPC_HOST", args.host)  # gRPC binds where HTTP does, by default
    reserved = _reserve_grpc_port(settings.grpc_port, os.environ["JEM_GRPC_HOST"] or args.host)
    _prepare_multiprocess_dir(args.workers)
    # the app (in every worker) enforces the limit, so that probes stay exempt: hand it the flag
    os.environ["JEM_LIMIT_CONCURRENCY"] = str(args.limit_concurrency)
    os.environ["JEM_WORKERS"] = str(args.workers)  # read by /v2's model configuration
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=log_config(settings.log_level),
        access_log=False,  # the app logs every request itself, with its request id
        # not uvicorn's limit: it counts idle and stalled connections, refuses health probes
        # and answers plain text (ConcurrencyLimitMiddleware does it in the API's shape)
        limit_concurrency=None,
        timeout_keep_alive=args.timeout_keep_alive,
        timeout_graceful_shutdown=args.graceful_shutdown_s,
        # uvicorn kills a worker that misses a 5 s ping by default; importing torch in a fresh
        # worker on a busy or CPU-limited host takes longer, and --workers N never came up
        timeout_worker_healthcheck=settings.worker_healthcheck_timeout_s,
        # httptools (C) with the request line + headers capped (JEM_MAX_HEADER_BYTES) and timed
        # (JEM_HEADER_TIMEOUT_S), its errors answered as JSON (service/server/protocol.py)
        http=JemHttpToolsProtocol,
        proxy_headers=False,
        server_header=False,
        root_path=args.root_path,
    )
    try:
        status = serve(config)
    finally:
        for sock in reserved:
            sock.close()
    raise SystemExit(status)


def _reserve_grpc_port(port: int | None, host: str) -> list[socket.socket]:
    """Hold JEM_GRPC_PORT for this process and its workers (`reserve_grpc_port`) while it runs;
    a port another process holds ends the start: one line on stderr and exit status 3. Port 0
    (each gRPC server takes a free port of its own) or gRPC off: nothing to hold."""
    if not port:
        return []
    try:
        reserved = reserve_grpc_port(host, port)
    except GrpcPortInUseError as exc:
        print(f"python -m service: error: {exc.strerror}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    os.environ[RESERVED_ENV] = "1"  # the workers' gRPC servers join it (SO_REUSEPORT)
    return reserved


if __name__ == "__main__":
    main()
