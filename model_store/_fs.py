"""File-system primitives for crash-safe publishing: durable writes, atomic replaces, locks.

A version becomes visible by one `os.rename` of a fully written, fsynced directory; an alias by
one `os.replace` of a fsynced file. Writers hold an `flock` on their staging directory while
they work, so a cleaner can tell a live writer's directory from a crashed one's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "STAGING_DIRNAME",
    "atomic_write",
    "clean_staging",
    "ensure_dir",
    "fsync_dir",
    "locked",
    "sha256_file",
    "staging_dir",
    "write_durable",
]

STAGING_DIRNAME = ".staging"
_CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (a new or renamed child survives a power cut)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Create `path` (it must not exist) holding `data`, flushed to disk before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        write_durable(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link `target` to `source`; a durable copy where hard links are not possible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        with target.open("rb+") as f:
            os.fsync(f.fileno())


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def ensure_dir(path: Path) -> None:
    """mkdir -p that fsyncs each parent it adds an entry to."""
    if path.is_dir():
        return
    ensure_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
        fsync_dir(path.parent)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Exclusive lock on `directory/.lock`, serialising writers of one model across processes."""
    ensure_dir(directory)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def staging_dir(root: Path, label: str) -> Iterator[Path]:
    """A fresh directory under `root/.staging`, locked while the caller fills it.

    Removed on the way out unless the caller renamed it away (that rename is the publish).
    """
    parent = root / STAGING_DIRNAME
    ensure_dir(parent)
    path = parent / f"{label}-{os.getpid()}-{secrets.token_hex(8)}"
    path.mkdir()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield path
    finally:
        os.close(fd)
        shutil.rmtree(path, ignore_errors=True)  # a no-op after a successful rename


def clean_staging(root: Path, max_age_s: float) -> list[Path]:
    """Remove staging directories left by crashed writers; returns what was removed.

    A directory is removed only when it is older than `max_age_s` and no live writer holds its
    lock (the kernel drops a killed process's locks).
    """
    parent = root / STAGING_DIRNAME
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except FileNotFoundError:
        return removed
    now = time.time()
    for path in entries:
        try:
            if path.is_symlink() or not path.is_dir():
                continue
            if now - path.stat().st_mtime < max_age_s:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # vanished meanwhile: another cleaner or the writer renamed it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        else:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed
