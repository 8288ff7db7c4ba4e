"""Which code wrote a checkpoint: git commit and dirty flag when available, package version."""

from __future__ import annotations

import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

from model_store.manifest import CodeVersion

__all__ = ["PACKAGE", "code_version"]

PACKAGE = "jem-serve"
_REPO = Path(__file__).resolve().parent.parent


def _git(args: list[str], cwd: Path, timeout_s: float) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version(repo: Path | None = None, timeout_s: float = 5.0) -> CodeVersion:
    """Describe the code in `repo` (default: this checkout). Fields are None when unknown."""
    cwd = repo if repo is not None else _REPO
    commit = _git(["rev-parse", "HEAD"], cwd, timeout_s)
    dirty: bool | None = None
    if commit is not None:
        status = _git(["status", "--porcelain", "--untracked-files=no"], cwd, timeout_s)
        dirty = None if status is None else bool(status)
    return CodeVersion(git_commit=commit, dirty=dirty, package=_package_version())


def _package_version() -> str | None:
    """The installed distribution's version; from pyproject.toml for an uninstalled checkout."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        pass
    try:
        with (_REPO / "pyproject.toml").open("rb") as f:
            project = tomllib.load(f).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    version = project.get("version") if project.get("name") == PACKAGE else None
    return version if isinstance(version, str) else None
