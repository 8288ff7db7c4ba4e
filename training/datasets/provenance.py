"""Where a built data set's pixels came from: Debian package versions and source-file hashes,
recorded in the data set's manifest by each builder (emoji, rendered digits)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

__all__ = ["file_sha256", "package_version"]


def package_version(package: str) -> str | None:
    """The installed Debian package's version (``dpkg-query``), or None off Debian."""
    if shutil.which("dpkg-query") is None:
        return None
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of the file's bytes. OSError when it cannot be read."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
