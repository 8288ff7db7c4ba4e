"""Names the store accepts: model names, aliases, file names inside a version, references."""

from __future__ import annotations

import re
from dataclasses import dataclass

from model_store.errors import InvalidModelName

__all__ = [
    "LATEST",
    "ModelRef",
    "parse_ref",
    "parse_version",
    "validate_alias",
    "validate_filename",
    "validate_name",
]

LATEST = "latest"

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION = re.compile(r"[1-9][0-9]{0,17}")


def validate_name(name: str, what: str = "model name") -> str:
    """Return `name` if it is a safe single path component, else raise InvalidModelName."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidModelName(str(name), what)
    return name


def validate_alias(alias: str) -> str:
    """Aliases follow the model-name rule, and may not look like a version or be `latest`."""
    validate_name(alias, "alias")
    if alias == LATEST or alias.isdigit():
        raise InvalidModelName(
            alias,
            "alias",
            "'latest' and plain numbers are reserved (they already mean a version); "
            "pick a word such as 'production' or 'staging'",
        )
    return alias


def validate_filename(filename: str) -> str:
    """A file inside a version directory: one path component, no hidden files, no '..'."""
    if not isinstance(filename, str) or not _FILENAME.fullmatch(filename) or ".." in filename:
        raise InvalidModelName(
            str(filename),
            "file name",
            "use 1-128 characters from A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter "
            "or digit, with no '..'",
        )
    return filename


def parse_version(text: str) -> int | None:
    """The version number `text` spells, or None when it is not a canonical positive integer."""
    return int(text) if _VERSION.fullmatch(text) else None


@dataclass(frozen=True)
class ModelRef:
    """One published version: `str(ref) == "name:version"`."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


def parse_ref(ref: str | ModelRef) -> tuple[str, str]:
    """Split "name", "name:latest", "name:3" or "name:production" into (name, selector)."""
    if isinstance(ref, ModelRef):
        return validate_name(ref.name), str(ref.version)
    if not isinstance(ref, str):
        raise InvalidModelName(repr(ref), "model reference")
    name, sep, selector = ref.partition(":")
    validate_name(name)
    if not sep:
        return name, LATEST
    if selector == LATEST or parse_version(selector) is not None:
        return name, selector
    if selector.isdigit():
        raise InvalidModelName(
            ref, "model reference", "versions are positive integers without leading zeros"
        )
    return name, validate_alias(selector)
