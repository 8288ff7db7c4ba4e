"""The Open Inference Protocol (KServe / Triton "v2"): REST under /v2 and, when JEM_GRPC_PORT is
set, gRPC; both thin over the same Runtime (Predictor, micro-batchers, limits) as /v1."""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.runtime import Runtime
from service.v2.rest import v2_router

__all__ = [
    "RESERVED_ENV",
    "GrpcPortInUseError",
    "grpc_unavailable",
    "port_in_use_message",
    "reserve_grpc_port",
    "serve_grpc",
    "v2_router",
]

logger = logging.getLogger("service.grpc")

# Set by `python -m service` once it holds the gRPC port (`reserve_grpc_port`): only then do the
# gRPC servers of its workers bind with SO_REUSEPORT, to share the port it reserved for them.
RESERVED_ENV = "_JEM_GRPC_PORT_RESERVED"


class GrpcPortInUseError(OSError):
    """JEM_GRPC_PORT is held by another process (or cannot be bound here at all: an address
    this host does not have, a privileged port); the message is one line that says which."""


def port_in_use_message(host: str, port: int, detail: str) -> str:
    return (
        f"JEM_GRPC_PORT={port}: cannot listen on {host}:{port} for gRPC, another process "
        f"holds it ({detail}): stop it or choose another JEM_GRPC_PORT"
    )


def reserve_grpc_port(host: str, port: int) -> list[socket.socket]:
    """Hold `host:port` for this service's gRPC servers while the returned sockets stay open.

    Each socket is bound (never listening, so it takes no connections) WITHOUT `SO_REUSEPORT`,
    so the bind fails when any other process holds the port, with or without that option
    (another jem-serve, whose workers bind with it, included), and only then gets the option
    set, so that the gRPC servers of this process and of its forked workers, which bind with
    `SO_REUSEPORT` (grpcio's default), can still join it. A process that starts later and
    binds without `SO_REUSEPORT` (another jem-serve reserving the port, or anything else) is
    refused. Raises `GrpcPortInUseError` naming JEM_GRPC_PORT and the port.
    """
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise GrpcPortInUseError(
            errno.EADDRNOTAVAIL, f"JEM_GRPC_HOST {host!r} does not resolve: {exc}"
        ) from None
    held: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    try:
        for family, kind, proto, _, sockaddr in addresses:
            if (family, str(sockaddr[0])) in seen:
                continue
            seen.add((family, str(sockaddr[0])))
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            if family == socket.AF_INET6:  # dual stack only for the wildcard, as grpcio binds
                wildcard = sockaddr[0] == "::"
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if wildcard else 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                detail = exc.strerror or str(exc)
                message = (
                    port_in_use_message(host, port, detail)
                    if exc.errno == errno.EADDRINUSE
                    else f"JEM_GRPC_PORT={port}: cannot listen on {host}:{port} for gRPC "
                    f"({detail}): check JEM_GRPC_HOST and JEM_GRPC_PORT"
                )
                raise GrpcPortInUseError(exc.errno or errno.EADDRINUSE, message) from None
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held


def grpc_port_reserved() -> bool:
    """Whether `python -m service` holds the gRPC port for this process (`RESERVED_ENV`)."""
    return os.environ.get(RESERVED_ENV) == "1"


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

    server, port = await start_grpc_server(
        runtime, s.grpc_host or s.host, s.grpc_port, share_port=grpc_port_reserved()
    )
    try:
        yield port
    finally:
        # in-flight calls get the HTTP drain time; new ones are refused at once
        await server.stop(grace=s.graceful_shutdown_s)
        logger.info("gRPC stopped")
