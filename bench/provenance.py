"""Where a measurement came from: the git commit of the measured code, and whether it had
uncommitted changes. Recorded in every results file (bench/results, bench/gpu_check).
"""

from __future__ import annotations

import subprocess

from bench.servers import REPO

__all__ = ["git_commit", "git_dirty"]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> str | None:
    """The checkout's HEAD commit (40 hex digits), or None without git."""
    return _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """Whether the measured code had uncommitted changes to tracked files (None: no git)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)
