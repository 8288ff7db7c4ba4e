"""Damaged versions are refused by name, and nothing in a store is ever unpickled."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from model_store import (
    ChecksumMismatch,
    CorruptFile,
    IncompatibleWeights,
    InvalidManifest,
    MissingFile,
    ModelStore,
    StoreError,
    UnsupportedFormatVersion,
)


@pytest.fixture
def version_dir(store: ModelStore, save: Any) -> Path:
    ref = save(buffer={"x": torch.randn(8, 1, 8, 8)}, files={"report.md": b"# report\n" * 50})
    return store.path(ref)


def _edit_manifest(version_dir: Path, **changes: Any) -> None:
    path = version_dir / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("filename", ["weights.safetensors", "buffer.safetensors", "report.md"])
def test_flipped_byte_is_a_checksum_mismatch(
    store: ModelStore, version_dir: Path, filename: str
) -> None:
    path = version_dir / filename
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    for action in (store.verify, store.load):
        with pytest.raises(ChecksumMismatch, match=f"{filename}.*sha256") as info:
            action("digits")
        assert info.value.filename == filename
        assert "Re-publish" in str(info.value)


def test_truncated_file_is_a_checksum_mismatch(store: ModelStore, version_dir: Path) -> None:
    path = version_dir / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ChecksumMismatch, match="bytes, the manifest says"):
        store.verify("digits")
    with pytest.raises(ChecksumMismatch):
        store.load("digits")
    with pytest.raises(CorruptFile):  # unverified, the truncated file still cannot be parsed
        store.load("digits", verify=False)


@pytest.mark.parametrize("filename", ["weights.safetensors", "buffer.safetensors", "report.md"])
def test_deleted_file_is_missing(store: ModelStore, version_dir: Path, filename: str) -> None:
    (version_dir / filename).unlink()
    with pytest.raises(MissingFile, match=f"{filename} is listed"):
        store.verify("digits")
    with pytest.raises(MissingFile):
        store.load("digits")


def test_deleted_manifest_is_missing(store: ModelStore, version_dir: Path) -> None:
    (version_dir / "manifest.json").unlink()
    with pytest.raises(MissingFile, match=r"manifest\.json"):
        store.load("digits:1")


def test_unlisted_file_is_named_with_what_exists(store: ModelStore, version_dir: Path) -> None:
    with pytest.raises(MissingFile, match=r"no file 'nope\.md'.*report\.md"):
        store.read_file("digits:1", "nope.md")


@pytest.mark.parametrize("found", [2, 99, 0, "1", None, [1], True])
def test_unknown_format_version_is_refused(
    store: ModelStore, version_dir: Path, found: object
) -> None:
    _edit_manifest(version_dir, format_version=found)
    with pytest.raises(UnsupportedFormatVersion, match="reads format versions 1") as info:
        store.load("digits:1")
    if found in (2, 99):
        assert "upgrade jem-serve" in str(info.value)


def test_newer_format_is_refused_before_its_fields_are_read(
    store: ModelStore, version_dir: Path
) -> None:
    # A future format may rename every field: the version check must come first.
    (version_dir / "manifest.json").write_text(json.dumps({"format_version": 2, "weights": {}}))
    with pytest.raises(UnsupportedFormatVersion):
        store.verify("digits:1")


@pytest.mark.parametrize(
    "changes",
    [
        {"surprise": 1},
        {"stage": "draft"},
        {"name": "other"},
        {"files": {"../escape": {"sha256": "0" * 64, "size": 1}}},
        {"files": {"manifest.json": {"sha256": "0" * 64, "size": 1}}},
    ],
)
def test_invalid_manifest(store: ModelStore, version_dir: Path, changes: dict[str, Any]) -> None:
    _edit_manifest(version_dir, **changes)
    with pytest.raises(InvalidManifest):
        store.load("digits:1")


def test_not_json(store: ModelStore, version_dir: Path) -> None:
    (version_dir / "manifest.json").write_bytes(b"\x80\x04not json")
    with pytest.raises(InvalidManifest, match="not JSON"):
        store.load("digits:1")


def test_manifest_that_does_not_fit_the_weights(store: ModelStore, version_dir: Path) -> None:
    _edit_manifest(version_dir, backbone={"name": "digits_cnn", "kwargs": {"width": 16}})
    with pytest.raises(IncompatibleWeights):
        store.load("digits:1")
    _edit_manifest(version_dir, backbone={"name": "digits_cnn", "kwargs": {"depth": 3}})
    with pytest.raises(InvalidManifest, match="digits_cnn"):
        store.load("digits:1")


# ---- pickles ------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _malicious(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def test_the_payload_would_run_if_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "control"
    pickle.loads(_malicious(marker))  # a positive control: this one runs, on purpose
    assert marker.exists()


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the store tried to unpickle something")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


@pytest.mark.usefixtures("no_unpickling")
def test_a_planted_pickle_as_weights_is_never_executed(
    store: ModelStore, version_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = _malicious(marker)
    (version_dir / "weights.safetensors").write_bytes(payload)
    with pytest.raises(ChecksumMismatch):
        store.load("digits:1")
    with pytest.raises(CorruptFile, match="not a safetensors file"):
        store.load("digits:1", verify=False)
    # An attacker who also rewrites the manifest's hash gets no further.
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["files"]["weights.safetensors"] = {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptFile):
        store.load("digits:1")
    assert not marker.exists()


@pytest.mark.usefixtures("no_unpickling")
def test_pickles_beside_the_weights_are_ignored(
    store: ModelStore, version_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    for name in ("model.pt", "weights.pth", "buffer.pkl", "training_state.pt"):
        (version_dir / name).write_bytes(_malicious(marker))
    loaded = store.load("digits:1")
    assert loaded.buffer is not None
    store.verify("digits:1")
    with pytest.raises(StoreError):
        store.read_file("digits:1", "model.pt")  # not in the manifest, so not served either
    assert not marker.exists()


def test_linked_files_are_shared_and_verified_first(
    store: ModelStore, version_dir: Path, save: Any
) -> None:
    """`save(linked=...)` hard-links a verified file of another version instead of copying it;
    a damaged source is refused, and deleting the source leaves the new version whole."""
    new = save(linked={"buffer.safetensors": "digits:1", "report.md": "digits:1"})
    assert (store.path(new) / "buffer.safetensors").samefile(version_dir / "buffer.safetensors")
    store.verify(new)
    store.delete("digits:1", force=True)
    store.verify(new)
    assert store.load(new).buffer is not None

    damaged = store.path(new) / "report.md"
    damaged.unlink()  # break the link before editing, or both versions would change
    damaged.write_bytes(b"# edited\n")
    with pytest.raises(ChecksumMismatch):
        save(linked={"report.md": new})
    with pytest.raises(ValueError, match="given twice"):
        save(buffer={"x": torch.zeros(1)}, linked={"buffer.safetensors": new})
