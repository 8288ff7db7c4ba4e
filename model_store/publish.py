"""The publish protocol: a version becomes visible in one rename, or not at all.

1. every file is written into a fresh directory under `<root>/.staging/` and fsynced;
2. under the model's lock, the next version number is chosen and manifest.json (which lists
   the sha256 and size of every other file) is written last and fsynced, then the directory;
3. the directory is renamed to `<root>/<name>/<version>` and the parent fsynced.

A writer killed at any point leaves at most a staging directory, which readers never look at
and the next writer removes once it is old and unlocked.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from model_store import _fs
from model_store.errors import VersionExists
from model_store.manifest import FileEntry
from model_store.names import parse_version

__all__ = ["MANIFEST", "publish", "version_numbers"]

MANIFEST = "manifest.json"
_LAST_VERSION = ".last_version"

write_durable = _fs.write_durable  # looked up per call, so a test can interpose on file writes


def version_numbers(model_dir: Path) -> list[int]:
    """The published version numbers of one model, ascending."""
    try:
        entries = list(model_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(v for e in entries if (v := parse_version(e.name)) is not None and e.is_dir())


def _last_version(model_dir: Path) -> int:
    try:
        return parse_version((model_dir / _LAST_VERSION).read_text().strip()) or 0
    except FileNotFoundError:
        return 0


def publish(
    root: Path,
    model_dir: Path,
    blobs: Mapping[str, bytes],
    manifest_for: Callable[[int, dict[str, FileEntry]], bytes],
    *,
    version: int | None = None,
    staging_max_age_s: float = 3600.0,
    links: Mapping[str, tuple[Path, FileEntry]] | None = None,
) -> int:
    """Publish `blobs` (file name -> bytes) plus the manifest `manifest_for(version, files)`
    as a new version of the model in `model_dir`; returns the version number.

    `links` (file name -> (a verified file of another version, its manifest entry)) are hard
    links to files that do not change: the new version shares their bytes on disk (a copy where
    the file system has no hard links). Versions are never modified in place, and deleting one
    removes only its own link."""
    _fs.clean_staging(root, staging_max_age_s)
    with _fs.staging_dir(root, model_dir.name) as stage:
        entries = {}
        for filename, data in blobs.items():
            write_durable(stage / filename, data)
            entries[filename] = FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        for filename, (source, entry) in (links or {}).items():
            _fs.link_or_copy(source, stage / filename)
            entries[filename] = entry
        with _fs.locked(model_dir):
            existing = version_numbers(model_dir)
            # Numbers are never reused, even after a delete: "name:3" names one model forever.
            highest = max([*existing, _last_version(model_dir)])
            number = version if version is not None else highest + 1
            if number in existing:
                raise VersionExists(model_dir.name, number)
            write_durable(stage / MANIFEST, manifest_for(number, entries))  # last: it vouches
            _fs.fsync_dir(stage)
            try:
                os.rename(stage, model_dir / str(number))
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # a directory is in the way
                    raise VersionExists(model_dir.name, number) from exc
                raise
            _fs.fsync_dir(model_dir)
            if number > highest:
                _fs.atomic_write(model_dir / _LAST_VERSION, f"{number}\n".encode())
    return number
