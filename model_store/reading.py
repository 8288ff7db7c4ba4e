"""StoreReader: a version's files, each checked against the size and sha256 its manifest lists.

Only safetensors and JSON are ever parsed: nothing in a store is unpickled, so a checkpoint
cannot run code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor

from jem import use_fast_layout
from model_store import _fs
from model_store.checkpoint import (
    BUFFER,
    WEIGHTS,
    LoadedModel,
    build_model,
    check_entry,
    tensor_filename,
    tensors_from_bytes,
)
from model_store.errors import IncompatibleWeights, MissingFile
from model_store.index import StoreIndex
from model_store.manifest import FileEntry, Manifest
from model_store.names import ModelRef, validate_filename
from model_store.publish import MANIFEST

__all__ = ["StoreReader"]


class StoreReader(StoreIndex):
    """Verification and loading on top of the index."""

    def _listed(self, mref: ModelRef, manifest: Manifest, filename: str) -> tuple[Path, FileEntry]:
        """(path, manifest entry) of a file the manifest lists; MissingFile if it lists none."""
        directory = self._version_dir(mref)
        entry = manifest.files.get(filename)
        if entry is None:
            raise MissingFile(str(mref), filename, directory, listed=list(manifest.files))
        return directory / filename, entry

    def _check_file(self, mref: ModelRef, manifest: Manifest, filename: str) -> Path:
        """The path of a listed file whose size and sha256 were just checked (streamed)."""
        path, entry = self._listed(mref, manifest, filename)
        try:
            digest, size = _fs.sha256_file(path)
        except FileNotFoundError:
            raise MissingFile(str(mref), filename, path) from None
        check_entry(mref, filename, entry, digest, size)
        return path

    def _read_verified(
        self, ref: ModelRef, manifest: Manifest, filename: str, verify: bool = True
    ) -> bytes:
        """A listed file's bytes, checked from the very bytes returned (no second read)."""
        path, entry = self._listed(ref, manifest, filename)
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
        for filename in manifest.files:
            if filename not in skip:
                self._check_file(mref, manifest, filename)

    def _verified_file(self, ref: str | ModelRef, filename: str) -> tuple[Path, FileEntry]:
        """(path, manifest entry) of a version's file whose size and sha256 were just checked."""
        mref = self.resolve(ref)
        manifest = self._manifest(mref)
        return self._check_file(mref, manifest, filename), manifest.files[filename]

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
