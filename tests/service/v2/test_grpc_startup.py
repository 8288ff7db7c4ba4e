"""JEM_GRPC_PORT without the grpc extra: a failed start (exit 3), said in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.v2 import grpc_unavailable
from tests.service_process import REPO

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
