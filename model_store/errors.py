"""The store's exceptions. Every message says what went wrong and what to do about it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "ChecksumMismatch",
    "CorruptFile",
    "IncompatibleWeights",
    "InvalidManifest",
    "InvalidModelName",
    "MissingFile",
    "ModelNotFound",
    "StoreError",
    "UnsupportedFormatVersion",
    "VersionExists",
    "VersionInUse",
    "VersionNotFound",
]


class StoreError(Exception):
    """Base class of every error the model store raises."""


class InvalidModelName(StoreError, ValueError):  # noqa: N818 (names fixed by the contract)
    """A model name, alias, reference or file name that could escape the store or surprise it."""

    def __init__(self, value: str, what: str = "model name", rule: str = "") -> None:
        self.value = value
        rule = rule or (
            "use 1-64 characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit, "
            "with no '..'"
        )
        super().__init__(f"invalid {what} {value!r}: {rule}")


class ModelNotFound(StoreError, LookupError):  # noqa: N818 (names fixed by the contract)
    def __init__(self, name: str, root: Path, known: Sequence[str]) -> None:
        self.name = name
        self.known = list(known)
        listing = ", ".join(self.known) if self.known else "none"
        super().__init__(
            f"no model named {name!r} in the store at {root}; models there: {listing}. "
            "Check the name, or point --store (or JEM_MODEL_STORE) at the store that holds it."
        )


class VersionNotFound(StoreError, LookupError):  # noqa: N818 (names fixed by the contract)
    def __init__(
        self,
        ref: str,
        versions: Sequence[int],
        aliases: Mapping[str, int],
        reason: str = "",
    ) -> None:
        self.ref = ref
        self.versions = list(versions)
        self.aliases = dict(aliases)
        listing = ", ".join(str(v) for v in self.versions) if self.versions else "none"
        alias_listing = (
            ", ".join(f"{a} -> {v}" for a, v in sorted(self.aliases.items())) if aliases else "none"
        )
        head = reason or f"no version matches {ref!r}"
        super().__init__(
            f"{head}; versions: {listing}; aliases: {alias_listing}. "
            "Use one of these as name:VERSION or name:ALIAS."
        )


class VersionExists(StoreError):  # noqa: N818 (names fixed by the contract)
    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version
        super().__init__(
            f"{name}:{version} already exists; versions are immutable. "
            "Save without version= to get the next number, or delete the old version first."
        )


class UnsupportedFormatVersion(StoreError):  # noqa: N818 (names fixed by the contract)
    def __init__(self, path: Path, found: object, supported: Iterable[int]) -> None:
        self.path = path
        self.found = found
        self.supported = sorted(supported)
        readable = ", ".join(str(v) for v in self.supported)
        if isinstance(found, int) and not isinstance(found, bool) and found > max(self.supported):
            advice = "it was written by a newer release: upgrade jem-serve to read it"
        else:
            advice = "re-publish the checkpoint with this release, or restore a valid manifest"
        super().__init__(
            f"{path} has format_version {found!r}, but this code reads format versions "
            f"{readable}; {advice}."
        )


class InvalidManifest(StoreError, ValueError):  # noqa: N818 (names fixed by the contract)
    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is not a valid manifest: {problem}. "
            "Restore the file from a backup or re-publish the model."
        )


class VersionInUse(StoreError):  # noqa: N818 (names fixed by the contract)
    def __init__(self, ref: str, aliases: Sequence[str]) -> None:
        self.ref = ref
        self.aliases = list(aliases)
        super().__init__(
            f"{ref} is what alias(es) {', '.join(self.aliases)} point to; move them to another "
            "version first (set_alias / `python -m model_store alias`), or delete with force=True "
            "to remove them too."
        )


class MissingFile(StoreError):  # noqa: N818 (names fixed by the contract)
    def __init__(
        self, ref: str, filename: str, path: Path, listed: Sequence[str] | None = None
    ) -> None:
        self.ref = ref
        self.filename = filename
        self.path = path
        if listed is None:
            message = (
                f"{ref}: {filename} is listed in the manifest but missing at {path}. "
                "Restore it from a backup or re-publish the model."
            )
        else:
            message = (
                f"{ref} has no file {filename!r} in its manifest; files: "
                f"{', '.join(sorted(listed)) or 'none'}. Ask for one of these."
            )
        super().__init__(message)


class ChecksumMismatch(StoreError):  # noqa: N818 (names fixed by the contract)
    def __init__(self, ref: str, filename: str, problem: str) -> None:
        self.ref = ref
        self.filename = filename
        super().__init__(
            f"{ref}: {filename} does not match its manifest entry ({problem}); the file is "
            "corrupt or was modified. Re-publish the model or restore the file from a backup."
        )


class CorruptFile(StoreError):  # noqa: N818 (names fixed by the contract)
    def __init__(self, ref: str, filename: str, problem: str) -> None:
        self.ref = ref
        self.filename = filename
        super().__init__(
            f"{ref}: {filename} cannot be read ({problem}). "
            "Re-publish the model or restore the file from a backup."
        )


class IncompatibleWeights(StoreError):  # noqa: N818 (names fixed by the contract)
    def __init__(self, what: str, problem: str) -> None:
        super().__init__(
            f"{what}: the weights do not fit the backbone the manifest describes ({problem}). "
            "Save the JEM itself (not a wrapped or bare backbone) with the backbone name and "
            "kwargs it was created with."
        )
