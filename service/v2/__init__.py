"""The Open Inference Protocol (KServe / Triton "v2"): REST under /v2 and, when JEM_GRPC_PORT is
set, gRPC; both thin over the same Runtime (Predictor, micro-batchers, limits) as /v1."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.runtime import Runtime
from service.v2.rest import v2_router

__all__ = ["grpc_unavailable", "serve_grpc", "v2_router"]

logger = logging.getLogger("service.grpc")


def _missing_grpc(reason: str) -> str:
    return (
        f"JEM_GRPC_PORT is set but gRPC is not installed ({reason}): install the grpc extra "
        "(pip install 'jem-serve[grpc]'; the image: --build-arg SERVE_EXTRAS=grpc), "
        "or unset JEM_GRPC_PORT"
    )


def grpc_unavailable() -> str | None:
    """Why the gRPC service cannot start here (grpcio or protobuf not installed), as one line
    that says what to do; None when both are there. `python -m service` asks before uvicorn
    starts when JEM_GRPC_PORT is set, so that a missing extra is one line on stderr, not a
    traceback. Looks the modules up without importing them: the parent of forked workers
    imports no gRPC (service/server/prefork.py)."""
    for module in ("grpc", "google.protobuf"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a parent package missing, or a module that refuses to load
            found = False
        if not found:
            return _missing_grpc(f"No module named {module!r}")
    return None


@asynccontextmanager
async def serve_grpc(runtime: Runtime) -> AsyncIterator[int | None]:
    """Run the gRPC service while the block runs; yields its port (None when off).

    grpcio is imported only here, so the REST-only service does not need the `grpc` extra.
    """
    s = runtime.settings
    if s.grpc_port is None:
        yield None
        return
    try:
        from service.v2.grpc_server import start_grpc_server
    except ImportError as exc:  # `python -m service` checked before uvicorn; other launchers
        raise RuntimeError(_missing_grpc(str(exc))) from exc

    server, port = await start_grpc_server(runtime, s.grpc_host or s.host, s.grpc_port)
    try:
        yield port
    finally:
        # in-flight calls get the HTTP drain time; new ones are refused at once
        await server.stop(grace=s.graceful_shutdown_s)
        logger.info("gRPC stopped")
