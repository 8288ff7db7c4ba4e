"""ModelStore: versioned, self-describing, verified JEM checkpoints on a local file system.

    <root>/<name>/<version>/manifest.json, weights.safetensors, [buffer.safetensors], ...
    <root>/<name>/aliases/<alias>        a version number, replaced atomically
    <root>/.staging/                     versions being written (invisible to readers)

Three layers, one class: `StoreIndex` (model_store/index.py: paths, listing, resolving
references, manifests), `StoreReader` (model_store/reading.py: verified reads and `load`), and
here the writes: `save` (through the publish protocol of model_store/publish.py), aliases,
`delete`. Only safetensors and JSON are ever parsed: nothing in a store is unpickled, so a
checkpoint cannot run code. See docs/model_store.md for the layout and every manifest field.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from torch import Tensor, nn

from model_store import _fs
from model_store.aliases import remove_alias, write_alias
from model_store.checkpoint import BUFFER, WEIGHTS, encode_files
from model_store.code_version import code_version
from model_store.errors import InvalidModelName, VersionInUse, VersionNotFound
from model_store.index import ENV_VAR, default_root
from model_store.manifest import FORMAT_VERSION, FileEntry, Manifest, ManifestDraft
from model_store.names import ModelRef, parse_ref, parse_version, validate_alias, validate_name
from model_store.publish import MANIFEST, publish
from model_store.reading import StoreReader

__all__ = ["BUFFER", "ENV_VAR", "MANIFEST", "WEIGHTS", "ModelStore", "default_root"]


class ModelStore(StoreReader):
    """A store rooted at `root` (default: `default_root()`); reads, verifies, loads and writes.

    `staging_max_age_s`: how old an unlocked staging directory must be before a writer
    removes it as abandoned.
    """

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
