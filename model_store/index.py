"""StoreIndex: where a store's models and versions live, and which version a reference names.

    <root>/<name>/<version>/manifest.json   a published version
    <root>/<name>/aliases/<alias>           a version number

Every path handed out is checked to resolve inside the root, so a name or a link cannot lead
out of the store.
"""

from __future__ import annotations

import os
from pathlib import Path

from model_store.aliases import read_aliases
from model_store.errors import (
    InvalidManifest,
    InvalidModelName,
    MissingFile,
    ModelNotFound,
    VersionNotFound,
)
from model_store.manifest import Manifest, parse_manifest
from model_store.names import LATEST, ModelRef, parse_ref, parse_version, validate_name
from model_store.publish import MANIFEST, version_numbers

__all__ = ["ENV_VAR", "StoreIndex", "default_root"]

ENV_VAR = "JEM_MODEL_STORE"


def default_root() -> Path:
    """`$JEM_MODEL_STORE`, else the store shipped inside the repository."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path(__file__).resolve().parent / "models"


class StoreIndex:
    """Paths, listings, references and manifests of a store; reads nothing but manifest.json."""

    def __init__(self, root: Path | str | None = None, *, staging_max_age_s: float = 3600.0):
        self.root = Path(root if root is not None else default_root()).expanduser().resolve()
        self.staging_max_age_s = staging_max_age_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    # ---- paths -----------------------------------------------------------------------------

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise InvalidModelName(str(path), "path", f"it resolves outside {self.root}")
        return resolved

    def _model_dir(self, name: str) -> Path:
        return self._inside(self.root / validate_name(name))

    def _version_dir(self, ref: ModelRef) -> Path:
        return self._inside(self._model_dir(ref.name) / str(ref.version))

    def path(self, ref: str | ModelRef) -> Path:
        return self._version_dir(self.resolve(ref))

    # ---- listing and resolving ----------------------------------------------------------------

    def _versions(self, name: str) -> list[int]:
        return version_numbers(self._model_dir(name))

    def list_models(self) -> list[str]:
        try:
            entries = sorted(self.root.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = []
        for entry in entries:
            try:
                if self._versions(entry.name):
                    names.append(entry.name)
            except InvalidModelName:
                continue  # .staging, stray files, links leading out of the store
        return names

    def list_versions(self, name: str) -> list[int]:
        versions = self._versions(name)
        if not versions:
            raise ModelNotFound(name, self.root, self.list_models())
        return versions

    def aliases(self, name: str) -> dict[str, int]:
        return read_aliases(self._model_dir(name))

    def resolve(self, ref: str | ModelRef) -> ModelRef:
        """ "name" / "name:latest" -> newest final version; "name:3"; "name:ALIAS"."""
        name, selector = parse_ref(ref)
        versions = self.list_versions(name)
        if selector == LATEST:
            for version in reversed(versions):
                if self._manifest(ModelRef(name, version)).stage == "final":
                    return ModelRef(name, version)
            raise VersionNotFound(
                f"{name}:{LATEST}",
                versions,
                self.aliases(name),
                f"{name} has no version with stage 'final' (checkpoints resolve only by number)",
            )
        number = parse_version(selector)
        if number is None:
            aliases = self.aliases(name)
            if selector not in aliases:
                reason = f"{name} has no alias {selector!r}"
                raise VersionNotFound(f"{name}:{selector}", versions, aliases, reason)
            number = aliases[selector]
            if number not in versions:
                reason = f"alias {name}:{selector} points to version {number}, which is gone"
                raise VersionNotFound(f"{name}:{selector}", versions, aliases, reason)
        if number not in versions:
            raise VersionNotFound(f"{name}:{selector}", versions, self.aliases(name))
        return ModelRef(name, number)

    # ---- manifests -----------------------------------------------------------------------------

    def manifest(self, ref: str | ModelRef) -> Manifest:
        """The parsed manifest, without checking the files it lists."""
        return self._manifest(self.resolve(ref))

    def _manifest(self, mref: ModelRef) -> Manifest:
        path = self._version_dir(mref) / MANIFEST
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise MissingFile(str(mref), MANIFEST, path) from None
        manifest = parse_manifest(raw, path)
        if (manifest.name, manifest.version) != (mref.name, mref.version):
            raise InvalidManifest(path, f"it describes {manifest.name}:{manifest.version}")
        return manifest
