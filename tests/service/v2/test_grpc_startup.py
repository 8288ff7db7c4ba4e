"""JEM_GRPC_PORT without the grpc extra, or held by another process: a failed start (exit 3),
said in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.v2 import grpc_unavailable
from tests.service_process import REPO, free_port, run_service

# `python -m service` in an interpreter where grpcio cannot be imported (as in an image built
# without SERVE_EXTRAS=grpc)
WITHOUT_GRPC = (
    "import runpy, sys; sys.modules['grpc'] = None; "
    "runpy.run_module('service', run_name='__main__', alter_sys=True)"
)


def test_grpc_unavailable_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert grpc_unavailable() is None  # the dev environment has the extra
    monkeypatch.setitem(sys.modules, "grpc", None)
    problem = grpc_unavailable()
    assert problem is not None
    assert "No module named 'grpc'" in problem
    assert "--build-arg SERVE_EXTRAS=grpc" in problem
    assert "\n" not in problem


@pytest.mark.parametrize("workers", ["1", "2"])
def test_grpc_port_without_grpc_is_one_line_and_exit_3(store_root: Path, workers: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "JEM_MODEL_STORE": str(store_root),
        "JEM_GRPC_PORT": "0",
        "JEM_WORKERS": workers,
    }
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_GRPC, "--port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("python -m service: error: JEM_GRPC_PORT is set but gRPC is not")
    assert "--build-arg SERVE_EXTRAS=grpc" in lines[0]


def _start(store_root: Path, grpc_port: int, workers: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "JEM_MODEL_STORE": str(store_root),
        "JEM_MODELS": "served",
        "JEM_GRPC_PORT": str(grpc_port),
        "JEM_WORKERS": workers,
    }
    return subprocess.run(
        [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_port_clash(proc: subprocess.CompletedProcess[str], port: int) -> None:
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no grpc traceback, no uvicorn start
    assert lines[0].startswith(f"python -m service: error: JEM_GRPC_PORT={port}: "), lines[0]
    assert f"127.0.0.1:{port}" in lines[0]
    assert "another process" in lines[0]


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain", "so_reuseport"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_grpc_port_held_by_another_process_is_one_line_and_exit_3(
    store_root: Path, workers: str, reuseport: bool
) -> None:
    """Any listener on the port, also one that set SO_REUSEPORT (as grpcio does by default and
    an older jem-serve's gRPC did), ends the start before uvicorn runs."""
    with socket.socket() as holder:
        if reuseport:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        _assert_port_clash(_start(store_root, port, workers), port)


@pytest.mark.integration
@pytest.mark.slow
def test_second_service_cannot_share_the_grpc_port(store_root: Path, tmp_path: Path) -> None:
    """A service with two workers shares its gRPC port between them; a second service asking
    for the same port exits 3 instead of silently taking part of the traffic."""
    import grpc
    import tritonclient.grpc as tg

    port = free_port()
    with run_service(
        store_root,
        tmp_path / "first.log",
        "--workers",
        "2",
        models="served",
        JEM_GRPC_PORT=str(port),
    ) as first:
        for workers in ("1", "2"):
            _assert_port_clash(_start(store_root, port, workers), port)
        calls = 20
        for _ in range(calls):  # a fresh connection each: the kernel picks a worker each time
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = tg.service_pb2_grpc.GRPCInferenceServiceStub(channel)
                assert stub.ServerLive(tg.service_pb2.ServerLiveRequest(), timeout=30).live
        metrics = httpx.get(f"{first.url}/metrics").text
        line = next(m for m in metrics.splitlines() if "grpc_server_live" in m and "_total" in m)
        assert float(line.rsplit(" ", 1)[1]) == calls  # all of them reached the first service
        assert first.proc.poll() is None


def test_a_port_that_cannot_be_bound_is_not_blamed_on_another_process() -> None:
    from service.v2 import GrpcPortInUseError, reserve_grpc_port

    with pytest.raises(GrpcPortInUseError) as info:  # TEST-NET-1: no host has it
        reserve_grpc_port("192.0.2.1", 8001)
    assert info.value.strerror.startswith("JEM_GRPC_PORT=8001: cannot listen on 192.0.2.1:8001")
    assert "check JEM_GRPC_HOST and JEM_GRPC_PORT" in info.value.strerror
    assert "another process" not in info.value.strerror


@pytest.mark.integration
@pytest.mark.slow
def test_one_client_process_reaches_one_worker_unless_its_channels_have_own_connections(
    store_root: Path, tmp_path: Path
) -> None:
    """The kernel spreads connections over the workers, not calls: grpcio's channels to one
    target share a connection (its global subchannel pool), so tritonclient clients in one
    process all reach one worker; with `grpc.use_local_subchannel_pool` each client has its own
    connection and the workers share them (docs/service.md, gRPC)."""
    import psutil
    import tritonclient.grpc as tg

    port = free_port()
    clients = 16  # all on one worker by chance: 2 * 2**-16

    def established(supervisor: int) -> list[int]:
        """The worker holding each established connection to the gRPC port."""
        return [
            worker.pid
            for worker in psutil.Process(supervisor).children()
            for conn in worker.net_connections(kind="tcp")
            if conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED
        ]

    def holders(channel_args: list[tuple[str, int]] | None, supervisor: int) -> list[int]:
        deadline = time.monotonic() + 10
        while established(supervisor):  # the previous clients' connections, closing
            assert time.monotonic() < deadline, established(supervisor)
            time.sleep(0.05)
        opened = [
            tg.InferenceServerClient(f"127.0.0.1:{port}", channel_args=channel_args)
            for _ in range(clients)
        ]
        try:
            assert all(c.is_server_live() for c in opened)
            return established(supervisor)
        finally:
            for c in opened:
                c.close()

    with run_service(
        store_root,
        tmp_path / "service.log",
        "--workers",
        "2",
        models="served",
        JEM_GRPC_PORT=str(port),
    ) as service:
        shared = holders(None, service.proc.pid)
        assert len(shared) == 1, shared  # one connection for every client
        own = holders([("grpc.use_local_subchannel_pool", 1)], service.proc.pid)
        assert len(own) == clients, own
        assert len(set(own)) == 2, own  # both workers hold some
