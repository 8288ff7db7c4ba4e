"""manifest.json: everything needed to rebuild, verify and serve a version, with no other input.

`ManifestDraft` is what a caller of `ModelStore.save` describes; the store adds the header
(format version, name, version, creation time), the code version and the file table, and writes
the result as a `Manifest`. The format is versioned: `format_version` is checked before anything
else is read, so an old reader refuses a newer manifest by name instead of misreading it.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from jem.preprocess import parse_background
from model_store.errors import InvalidManifest, UnsupportedFormatVersion
from model_store.names import validate_filename, validate_name

__all__ = [
    "FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "BackboneSpec",
    "Calibration",
    "CodeVersion",
    "FileEntry",
    "FittedOn",
    "InputSpecEntry",
    "Manifest",
    "ManifestDraft",
    "Sampling",
    "ScoreCalibration",
    "parse_manifest",
]

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})

Stage = Literal["checkpoint", "final"]


class _Strict(BaseModel):
    # A misspelt field is an error, not silently dropped data.
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class BackboneSpec(_Strict):
    """`create_backbone(name, **kwargs)` rebuilds the network."""

    name: str = Field(min_length=1)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)


class InputSpecEntry(_Strict):
    """The fields of `jem.InputSpec`: the tensor shape and how an uploaded image becomes one."""

    channels: int = Field(ge=1)
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    color_mode: Literal["L", "RGB"]
    invert: bool = False
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos", "box"] = "box"
    value_range: tuple[float, float] = (-1.0, 1.0)
    background: str = "auto"
    normalization: Literal["digits-v1", "digits-v2", "digits-v3"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InputSpecEntry:
        parse_background(self.background)
        if self.normalization is not None and self.color_mode != "L":
            raise ValueError(f"normalization {self.normalization!r} needs color_mode 'L'")
        expected = 1 if self.color_mode == "L" else 3
        if self.channels != expected:
            raise ValueError(f"color_mode {self.color_mode!r} needs channels={expected}")
        low, high = self.value_range
        if not low < high:
            raise ValueError("value_range must be (low, high) with low < high")
        return self


class CodeVersion(_Strict):
    git_commit: str | None = None
    dirty: bool | None = None
    package: str | None = None


class FittedOn(_Strict):
    """The held-out split a calibration was fitted on (never the training data)."""

    split: str = Field(min_length=1)
    n: int = Field(ge=1)
    seed: int | None = None


class ScoreCalibration(_Strict):
    """One OOD score's threshold and the in-distribution distribution it was chosen from.

    Scores are oriented higher = more likely out-of-distribution. `threshold` lets `target_tpr`
    of the in-distribution validation inputs pass; `quantiles[p]` is their p-th percentile.
    """

    threshold: float
    target_tpr: float = Field(default=0.95, gt=0.0, lt=1.0)
    quantiles: list[float] = Field(min_length=101, max_length=101)
    direction: Literal["higher_is_ood"] = "higher_is_ood"

    @field_validator("quantiles")
    @classmethod
    def _sorted_and_finite(cls, values: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in values):
            raise ValueError("quantiles must be finite")
        if any(b < a for a, b in itertools.pairwise(values)):
            raise ValueError("quantiles must be non-decreasing")
        return values

    @classmethod
    def from_scores(cls, scores: Sequence[float], target_tpr: float = 0.95) -> ScoreCalibration:
        """Fit from in-distribution validation scores (linear-interpolated percentiles)."""
        values = sorted(float(s) for s in scores)
        if not values:
            raise ValueError("need at least one in-distribution score")

        def quantile(q: float) -> float:
            pos = q * (len(values) - 1)
            lo = math.floor(pos)
            hi = min(lo + 1, len(values) - 1)
            return values[lo] + (values[hi] - values[lo]) * (pos - lo)

        return cls(
            threshold=quantile(target_tpr),
            target_tpr=target_tpr,
            quantiles=[quantile(p / 100) for p in range(101)],
        )

    def is_ood(self, score: float) -> bool:
        return score > self.threshold

    def percentile(self, score: float) -> float:
        """Percentile (0-100) of `score` among the in-distribution scores: how unusual it is."""
        q = self.quantiles
        if score <= q[0]:
            return 0.0
        if score >= q[-1]:
            return 100.0
        hi = bisect.bisect_right(q, score)
        lo = hi - 1
        span = q[hi] - q[lo]
        return float(lo) + ((score - q[lo]) / span if span > 0 else 0.0)


class Calibration(_Strict):
    temperature: float = Field(gt=0.0)
    fitted_on: FittedOn
    scores: dict[str, ScoreCalibration] = Field(default_factory=dict)


class Sampling(_Strict):
    """SGLD settings the model was trained with: the defaults for generating from it."""

    steps: int = Field(ge=1)
    step_size: float = Field(gt=0.0)
    noise_std: float = Field(ge=0.0)
    clamp: tuple[float, float] | None = (-1.0, 1.0)
    init: str = "uniform"


class ManifestDraft(_Strict):
    """What the caller of `ModelStore.save` describes; the store fills in the rest."""

    stage: Stage = "final"
    backbone: BackboneSpec
    input_spec: InputSpecEntry
    class_names: list[str] = Field(min_length=1)
    training: dict[str, JsonValue] = Field(default_factory=dict)
    code_version: CodeVersion | None = None
    metrics: dict[str, JsonValue] = Field(default_factory=dict)
    calibration: Calibration | None = None
    sampling: Sampling | None = None
    parent: str | None = None

    @field_validator("input_spec", mode="before")
    @classmethod
    def _from_jem_input_spec(cls, value: Any) -> Any:
        # Accept a jem.InputSpec as well as its dict form.
        to_dict = getattr(value, "to_dict", None)
        return to_dict() if callable(to_dict) else value

    @field_validator("class_names")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("class_names must be unique")
        return names

    @classmethod
    def from_manifest(cls, manifest: Manifest, **changes: Any) -> ManifestDraft:
        """A draft copying `manifest`'s description (e.g. to publish a recalibrated version)."""
        data = manifest.model_dump(include=set(cls.model_fields))
        data.update(changes)
        return cls.model_validate(data)


class _Header(_Strict):
    format_version: int
    name: str
    version: int = Field(ge=1)
    created_at: AwareDatetime


class Manifest(ManifestDraft, _Header):
    """The full manifest.json. `files` maps every other file in the version to its hash."""

    code_version: CodeVersion
    files: dict[str, FileEntry]

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        return validate_name(name)

    @field_validator("files")
    @classmethod
    def _valid_filenames(cls, files: dict[str, FileEntry]) -> dict[str, FileEntry]:
        # A crafted manifest must not make the store read outside the version directory.
        for filename in files:
            validate_filename(filename)
            if filename == "manifest.json":
                raise ValueError("the manifest cannot list itself")
        return files

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()


def parse_manifest(raw: bytes, path: Path) -> Manifest:
    """Parse manifest.json, checking `format_version` before any other field."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifest(path, f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidManifest(path, "the top level is not a JSON object")
    found = data.get("format_version")
    if (
        not isinstance(found, int)
        or isinstance(found, bool)
        or found not in SUPPORTED_FORMAT_VERSIONS
    ):
        raise UnsupportedFormatVersion(path, found, SUPPORTED_FORMAT_VERSIONS)
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidManifest(path, problems) from None
