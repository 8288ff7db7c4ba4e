"""Tools the benchmarks run beside the service, each in its own venv made from a pinned file.

The peer frameworks (`.venv-peers`) and Triton's perf_analyzer (`.venv-perf-analyzer`) pin
FastAPI, gRPC and protobuf versions of their own; in the service's venv they would fight its pins.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.servers import REPO

__all__ = ["ensure_venv"]


def _digest(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]


def ensure_venv(
    requirements: Path, venv: Path, *, label: str, pip_args: Sequence[str] = ()
) -> Path:
    """`venv`, (re)installed from `requirements` when that file changed; returns its bin
    directory. `pip_args` go to `pip install` (e.g. `--no-deps`); pip's errors propagate as
    subprocess.CalledProcessError."""
    stamp = venv / ".requirements-sha256"
    bin_dir = venv / "bin"
    if stamp.exists() and stamp.read_text().strip() == _digest(requirements):
        return bin_dir
    shown = requirements.relative_to(REPO) if requirements.is_relative_to(REPO) else requirements
    print(f"{label}: installing {shown} into {venv} (minutes)", flush=True)
    if not (bin_dir / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *pip_args]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    stamp.write_text(_digest(requirements) + "\n")
    return bin_dir
