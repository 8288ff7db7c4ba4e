"""Aliases: `<root>/<name>/aliases/<alias>` holds a version number, replaced atomically."""

from __future__ import annotations

from pathlib import Path

from model_store import _fs
from model_store.errors import CorruptFile, InvalidModelName
from model_store.names import parse_version, validate_alias

__all__ = ["read_aliases", "remove_alias", "write_alias"]

_DIRNAME = "aliases"


def read_aliases(model_dir: Path) -> dict[str, int]:
    """alias -> version for one model; raises CorruptFile for an alias file that is not a number."""
    try:
        entries = sorted((model_dir / _DIRNAME).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found = {}
    for entry in entries:
        try:
            alias = validate_alias(entry.name)
        except InvalidModelName:
            continue  # the temporary file of an interrupted write
        text = entry.read_text(errors="replace").strip()
        version = parse_version(text)
        if version is None:
            problem = f"holds {text[:20]!r}, not a version number; set the alias again"
            raise CorruptFile(model_dir.name, f"{_DIRNAME}/{alias}", problem)
        found[alias] = version
    return found


def write_alias(model_dir: Path, alias: str, version: int) -> None:
    directory = model_dir / _DIRNAME
    _fs.ensure_dir(directory)
    _fs.atomic_write(directory / validate_alias(alias), f"{version}\n".encode())


def remove_alias(model_dir: Path, alias: str) -> None:
    (model_dir / _DIRNAME / validate_alias(alias)).unlink()
    _fs.fsync_dir(model_dir / _DIRNAME)
