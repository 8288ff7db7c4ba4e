"""ModelStore: versioned, self-describing, verified JEM checkpoints on a local file system.

    <root>/<name>/<version>/manifest.json, weights.safetensors, [buffer.safetensors], ...
    <root>/<name>/aliases/<alias>        a version number, replaced atomically
    <root>/.staging/                     versions being written (invisible to readers)

Only safetensors and JSON are ever parsed: nothing in a store is unpickled, so a checkpoint
cannot run code. See docs/model_store.md for the layout and every manifest field.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from jem import use_fast_layout
from model_store import _fs
from model_store.aliases import read_aliases, remove_alias, write_alias
from model_store.checkpoint import (
    BUFFER,
    WEIGHTS,
    LoadedModel,
    build_model,
    check_entry,
    encode_files,
    tensor_filename,
    tensors_from_bytes,
)
from model_store.code_version import code_version
from model_store.errors import (
    IncompatibleWeights,
    InvalidManifest,
    InvalidModelName,
    MissingFile,
    ModelNotFound,
    VersionInUse,
    VersionNotFound,
)
from model_store.manifest import FORMAT_VERSION, FileEntry, Manifest, ManifestDraft, parse_manifest
from model_store.names import (
    LATEST,
    ModelRef,
    parse_ref,
    parse_version,
    validate_alias,
    validate_filename,
    validate_name,
)
from model_store.publish import MANIFEST, publish, version_numbers

__all__ = ["BUFFER", "ENV_VAR", "MANIFEST", "WEIGHTS", "ModelStore", "default_root"]

ENV_VAR = "JEM_MODEL_STORE"


def default_root() -> Path:
    """`$JEM_MODEL_STORE`, else the store shipped inside the repository."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path(__file__).resolve().parent / "models"


class ModelStore:
    def __init__(self, root: Path | str | None = None, *, staging_max_age_s: float = 3600.0):
        self.root = Path(root if root is not None else default_root()).expanduser().resolve()
        self.staging_max_age_s = staging_max_age_s

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

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

    # ---- reading -------------------------------------------------------------------------------

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

    def _read_verified(
        self, ref: ModelRef, manifest: Manifest, filename: str, verify: bool = True
    ) -> bytes:
        entry = manifest.files.get(filename)
        if entry is None:
            raise MissingFile(
                str(ref), filename, self._version_dir(ref), listed=list(manifest.files)
            )
        path = self._version_dir(ref) / filename
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MissingFile(str(ref), filename, path) from None
        if verify:
            check_entry(ref, filename, entry, hashlib.sha256(data).hexdigest(), len(data))
        return data

    def _read_tensors(
        self, ref: ModelRef, manifest: Manifest, filename: str, verify: bool = True
    ) -> dict[str, Tensor]:
        data = self._read_verified(ref, manifest, filename, verify)
        return tensors_from_bytes(ref, filename, data)

    def verify(self, ref: str | ModelRef) -> Manifest:
        """Check the size and sha256 of every file the manifest lists; return the manifest."""
        mref = self.resolve(ref)
        manifest = self._manifest(mref)
        self._verify_files(mref, manifest)
        return manifest

    def _verify_files(
        self, mref: ModelRef, manifest: Manifest, skip: frozenset[str] = frozenset()
    ) -> None:
        directory = self._version_dir(mref)
        for filename, entry in manifest.files.items():
            if filename in skip:
                continue
            try:
                digest, size = _fs.sha256_file(directory / filename)
            except FileNotFoundError:
                raise MissingFile(str(mref), filename, directory / filename) from None
            check_entry(mref, filename, entry, digest, size)

    def load(
        self, ref: str | ModelRef, *, device: str | torch.device = "cpu", verify: bool = True
    ) -> LoadedModel:
        """Rebuild the model from the manifest alone, load its weights, verify every file."""
        mref = self.resolve(ref)
        manifest = self._manifest(mref)
        if verify:  # weights and buffer are hashed below, from the very bytes that are loaded
            self._verify_files(mref, manifest, skip=frozenset({WEIGHTS, BUFFER}))
        state = self._read_tensors(mref, manifest, WEIGHTS, verify)
        model = build_model(manifest, self._version_dir(mref) / MANIFEST)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise IncompatibleWeights(str(mref), str(exc)) from None
        use_fast_layout(model.to(device).eval(), device)
        buffer = None
        if BUFFER in manifest.files:
            tensors = self._read_tensors(mref, manifest, BUFFER, verify)
            buffer = {k: v.to(device) for k, v in tensors.items()}
        return LoadedModel(mref, model, manifest, buffer, self._version_dir(mref))

    def read_tensors(self, ref: str | ModelRef, filename: str) -> dict[str, Tensor]:
        """A verified safetensors file of a version ("training_state" or "x.safetensors")."""
        mref = self.resolve(ref)
        return self._read_tensors(mref, self._manifest(mref), tensor_filename(filename))

    def read_file(self, ref: str | ModelRef, filename: str) -> bytes:
        """A verified file of a version, as bytes."""
        mref = self.resolve(ref)
        return self._read_verified(mref, self._manifest(mref), validate_filename(filename))

    # ---- writing -------------------------------------------------------------------------------

    def save(
        self,
        name: str,
        model: nn.Module,
        manifest: ManifestDraft | Mapping[str, Any],
        *,
        buffer: Mapping[str, Tensor] | None = None,
        tensors: Mapping[str, Mapping[str, Tensor]] | None = None,
        files: Mapping[str, bytes] | None = None,
        version: int | None = None,
        linked: Mapping[str, str | ModelRef] | None = None,
    ) -> ModelRef:
        """Publish a new version atomically; returns its reference.

        `buffer` is a replay buffer's state dict; `tensors` maps file names (".safetensors"
        optional) to further tensor dicts; `files` maps file names to raw bytes (PNG, MD, JSON).
        `linked` maps file names to versions whose file of that name the new version takes
        unchanged: verified against that version's manifest, then hard-linked (no copy), e.g.
        the replay buffer of a recalibrated version.
        """
        validate_name(name)
        if version is not None and (isinstance(version, bool) or version < 1):
            raise ValueError(f"version must be a positive integer, got {version!r}")
        draft = ManifestDraft.model_validate(
            manifest.model_dump(include=set(ManifestDraft.model_fields))
            if isinstance(manifest, ManifestDraft)
            else manifest
        )
        blobs = encode_files(name, model, draft, buffer, tensors or {}, files or {})
        links = {}
        for filename, source_ref in (linked or {}).items():
            if filename in blobs or filename == MANIFEST:
                raise ValueError(f"{filename} is given twice (written and linked)")
            links[filename] = self._verified_file(source_ref, filename)
        header = draft.model_dump()
        header["code_version"] = draft.code_version or code_version()

        def manifest_for(number: int, entries: dict[str, FileEntry]) -> bytes:
            return Manifest(
                format_version=FORMAT_VERSION,
                name=name,
                version=number,
                created_at=datetime.now(UTC),
                files=entries,
                **header,
            ).to_json()

        model_dir = self._model_dir(name)
        number = publish(
            self.root,
            model_dir,
            blobs,
            manifest_for,
            version=version,
            staging_max_age_s=self.staging_max_age_s,
            links=links,
        )
        return ModelRef(name, number)

    def _verified_file(self, ref: str | ModelRef, filename: str) -> tuple[Path, FileEntry]:
        """(path, manifest entry) of a version's file whose size and sha256 were just checked."""
        mref = self.resolve(ref)
        manifest = self._manifest(mref)
        entry = manifest.files.get(filename)
        path = self._version_dir(mref) / filename
        if entry is None:
            raise MissingFile(str(mref), filename, path.parent, listed=list(manifest.files))
        try:
            digest, size = _fs.sha256_file(path)
        except FileNotFoundError:
            raise MissingFile(str(mref), filename, path) from None
        check_entry(mref, filename, entry, digest, size)
        return path, entry

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point `name:alias` at `version`, replacing the alias file atomically."""
        validate_alias(alias)
        model_dir = self._model_dir(name)
        self.list_versions(name)  # ModelNotFound before the lock creates anything
        with _fs.locked(model_dir):
            versions = self.list_versions(name)
            if version not in versions:
                raise VersionNotFound(f"{name}:{version}", versions, self.aliases(name))
            write_alias(model_dir, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        validate_alias(alias)
        model_dir = self._model_dir(name)
        self.list_versions(name)
        with _fs.locked(model_dir):
            aliases = self.aliases(name)
            if alias not in aliases:
                reason = f"{name} has no alias {alias!r}"
                raise VersionNotFound(f"{name}:{alias}", self._versions(name), aliases, reason)
            remove_alias(model_dir, alias)

    def delete(self, ref: str | ModelRef, *, force: bool = False) -> ModelRef:
        """Delete one explicitly numbered version ("name:3"). Aliases pointing at it block the
        deletion unless `force`, which removes them too."""
        name, selector = parse_ref(ref)
        number = parse_version(selector)
        if number is None:
            raise InvalidModelName(
                str(ref), "reference to delete", "name the version explicitly, as name:3"
            )
        mref = ModelRef(name, number)
        model_dir = self._model_dir(name)
        trash = self.root / _fs.STAGING_DIRNAME / f"deleted-{name}-{number}-{secrets.token_hex(6)}"
        self.list_versions(name)
        with _fs.locked(model_dir):
            versions = self.list_versions(name)
            aliases = self.aliases(name)
            if number not in versions:
                raise VersionNotFound(str(mref), versions, aliases)
            pointing = sorted(a for a, v in aliases.items() if v == number)
            if pointing and not force:
                raise VersionInUse(str(mref), pointing)
            for alias in pointing:
                remove_alias(model_dir, alias)
            _fs.ensure_dir(trash.parent)
            os.rename(self._version_dir(mref), trash)  # vanishes for readers in one step
            _fs.fsync_dir(model_dir)
        shutil.rmtree(trash, ignore_errors=True)
        return mref
