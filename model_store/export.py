"""Copy chosen versions into another store: a deployment's store holds what it serves, not the
whole history of a training store (the Docker image ships the latest version of each model).

A version keeps its number, manifest and files byte for byte, so ``digits-jem:41`` names the
same model in both stores; every file is checked against the source manifest before it is
linked or copied, and the copy is published with the store's own protocol (model_store/publish.py:
it appears in one rename or not at all). Aliases that point at a copied version go with it.
A version's ``parent`` is lineage only: it need not be copied for the version to load.
"""

from __future__ import annotations

from dataclasses import dataclass

from model_store.aliases import write_alias
from model_store.errors import StoreError, VersionExists
from model_store.names import ModelRef
from model_store.publish import MANIFEST, publish
from model_store.store import ModelStore

__all__ = ["Exported", "export"]


@dataclass(frozen=True)
class Exported:
    """One copied version: its reference, file count, bytes and the aliases that went along."""

    ref: ModelRef
    files: int
    size: int
    aliases: tuple[str, ...]
    already_there: bool = False


def export(source: ModelStore, dest: ModelStore, refs: list[str]) -> list[Exported]:
    """Copy each of `refs` ("name" = the latest version, "name:3", "name:alias") from `source`
    into `dest` under the same version number.

    A version already in `dest` with the same manifest is left as it is (``already_there``);
    one with another manifest raises VersionExists, and `dest` being `source` StoreError.
    Every source file is verified (size and sha256 against its manifest) first: StoreError
    subclasses (ModelNotFound, VersionNotFound, ChecksumMismatch, MissingFile) name what is
    wrong. Nothing is written before every reference has resolved.
    """
    if source.root.resolve() == dest.root.resolve():
        raise StoreError(
            f"the destination is the source store itself ({source.root}); name another"
        )
    resolved = list(dict.fromkeys(source.resolve(ref) for ref in refs))  # all resolve, or none
    return [_export_one(source, dest, mref) for mref in resolved]


def _export_one(source: ModelStore, dest: ModelStore, mref: ModelRef) -> Exported:
    manifest = source.manifest(mref)
    manifest_bytes = (source.path(mref) / MANIFEST).read_bytes()
    # every file checked against the manifest read once above (size and sha256, streamed)
    links = {
        name: (source._check_file(mref, manifest, name), entry)
        for name, entry in manifest.files.items()
    }
    aliases = tuple(sorted(a for a, v in source.aliases(mref.name).items() if v == mref.version))
    size = sum(entry.size for entry in manifest.files.values())
    already = mref.version in dest._versions(mref.name)
    if already:
        if (dest.path(mref) / MANIFEST).read_bytes() != manifest_bytes:
            raise VersionExists(mref.name, mref.version)
        dest.verify(mref)
    else:
        publish(
            dest.root,
            dest._model_dir(mref.name),
            {},
            lambda number, entries: manifest_bytes,  # the number is fixed: the same manifest
            version=mref.version,
            staging_max_age_s=dest.staging_max_age_s,
            links=links,
        )
    for alias in aliases:
        write_alias(dest._model_dir(mref.name), alias, mref.version)
    return Exported(mref, len(manifest.files), size, aliases, already)
