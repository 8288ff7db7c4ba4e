"""`make serve` binds where PORT / HOST say, else where JEM_PORT / JEM_HOST (the service's own
variables, docs/service.md) say, else 127.0.0.1:8000."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.service_process import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def serve_command(*args: str, **env: str) -> str:
    """The command `make serve` would run (`-n`), the venv's stamp taken as up to date."""
    environ = {
        k: v for k, v in os.environ.items() if k not in ("PORT", "HOST", "JEM_PORT", "JEM_HOST")
    }
    out = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "serve", *args],
        cwd=REPO,
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return next(line for line in out.splitlines() if "-m service" in line)


@pytest.mark.parametrize(
    ("args", "env", "wanted"),
    [
        ((), {}, "--host 127.0.0.1 --port 8000"),
        ((), {"JEM_PORT": "8050"}, "--host 127.0.0.1 --port 8050"),
        ((), {"JEM_HOST": "0.0.0.0", "JEM_PORT": "8050"}, "--host 0.0.0.0 --port 8050"),
        ((), {"PORT": "9000"}, "--port 9000"),  # README: PORT=... make serve
        ((), {"PORT": "9000", "JEM_PORT": "8050"}, "--port 9000"),  # PORT wins
        (("PORT=9001",), {"JEM_PORT": "8050"}, "--port 9001"),
        (("HOST=::1",), {"JEM_HOST": "0.0.0.0"}, "--host ::1 --port 8000"),
    ],
)
def test_serve_port_and_host(args: tuple[str, ...], env: dict[str, str], wanted: str) -> None:
    assert serve_command(*args, **env).endswith(wanted)
