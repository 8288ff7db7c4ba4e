"""Versioned, self-describing, verified JEM checkpoints: save, load, verify, list, aliases."""

from model_store.checkpoint import LoadedModel
from model_store.code_version import code_version
from model_store.errors import (
    ChecksumMismatch,
    CorruptFile,
    IncompatibleWeights,
    InvalidManifest,
    InvalidModelName,
    MissingFile,
    ModelNotFound,
    StoreError,
    UnsupportedFormatVersion,
    VersionExists,
    VersionInUse,
    VersionNotFound,
)
from model_store.manifest import (
    FORMAT_VERSION,
    SUPPORTED_FORMAT_VERSIONS,
    BackboneSpec,
    Calibration,
    CodeVersion,
    FileEntry,
    FittedOn,
    InputSpecEntry,
    Manifest,
    ManifestDraft,
    Sampling,
    ScoreCalibration,
)
from model_store.names import ModelRef
from model_store.store import ENV_VAR, ModelStore, default_root

__all__ = [
    "ENV_VAR",
    "FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "BackboneSpec",
    "Calibration",
    "ChecksumMismatch",
    "CodeVersion",
    "CorruptFile",
    "FileEntry",
    "FittedOn",
    "IncompatibleWeights",
    "InputSpecEntry",
    "InvalidManifest",
    "InvalidModelName",
    "LoadedModel",
    "Manifest",
    "ManifestDraft",
    "MissingFile",
    "ModelNotFound",
    "ModelRef",
    "ModelStore",
    "Sampling",
    "ScoreCalibration",
    "StoreError",
    "UnsupportedFormatVersion",
    "VersionExists",
    "VersionInUse",
    "VersionNotFound",
    "code_version",
    "default_root",
]
