"""The manifest's pydantic models: calibration maths, validation, and agreement with jem."""

from __future__ import annotations

import dataclasses
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from jem import InputSpec
from model_store import (
    Calibration,
    CodeVersion,
    InputSpecEntry,
    ManifestDraft,
    ModelStore,
    Sampling,
    ScoreCalibration,
    code_version,
)


def test_input_spec_entry_mirrors_jem_input_spec() -> None:
    # The manifest is a versioned on-disk format, so it keeps its own copy of the fields;
    # this test catches the two drifting apart.
    fields = {f.name: f for f in dataclasses.fields(InputSpec)}
    assert set(InputSpecEntry.model_fields) == set(fields)
    for name, field in fields.items():
        if field.default is not dataclasses.MISSING:
            assert InputSpecEntry.model_fields[name].default == field.default, name
    spec = InputSpec(channels=3, height=32, width=32, color_mode="RGB", invert=True)
    entry = InputSpecEntry.model_validate(spec.to_dict())
    assert InputSpec.from_dict(entry.model_dump()) == spec


def test_draft_accepts_a_jem_input_spec(make_draft: Any) -> None:
    spec = InputSpec(channels=1, height=8, width=8, color_mode="L")
    draft = ManifestDraft.model_validate(make_draft(input_spec=spec))
    assert (
        draft.input_spec.model_dump() == InputSpecEntry.model_validate(spec.to_dict()).model_dump()
    )


def test_score_calibration_from_scores() -> None:
    scores = [float(i) for i in range(1001)]  # 0..1000, uniform
    cal = ScoreCalibration.from_scores(scores, target_tpr=0.95)
    assert cal.threshold == pytest.approx(950.0)
    assert len(cal.quantiles) == 101
    assert cal.quantiles[0] == 0.0
    assert cal.quantiles[50] == 500.0
    assert cal.quantiles[100] == 1000.0
    # 95% of the in-distribution scores pass the threshold, as documented.
    assert sum(not cal.is_ood(s) for s in scores) / len(scores) == pytest.approx(0.95, abs=1e-3)
    assert cal.percentile(-5.0) == 0.0
    assert cal.percentile(500.0) == pytest.approx(50.0)
    assert cal.percentile(975.0) == pytest.approx(97.5)
    assert cal.percentile(2000.0) == 100.0
    flat = ScoreCalibration.from_scores([3.0, 3.0])
    assert flat.percentile(3.0) == 0.0
    assert flat.percentile(3.1) == 100.0


@pytest.mark.parametrize(
    "bad",
    [
        {"quantiles": [0.0] * 100},
        {"quantiles": [float(100 - i) for i in range(101)]},
        {"quantiles": [math.nan] * 101},
        {"target_tpr": 1.5},
        {"direction": "lower_is_ood"},
    ],
)
def test_score_calibration_validation(bad: dict[str, Any]) -> None:
    data: dict[str, Any] = {"threshold": 1.0, "quantiles": [float(i) for i in range(101)]}
    data.update(bad)
    with pytest.raises(ValidationError):
        ScoreCalibration.model_validate(data)


def test_calibration_and_sampling_forbid_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        Calibration.model_validate(
            {"temperature": 1.0, "fitted_on": {"split": "val", "n": 1}, "temprature": 2.0}
        )
    with pytest.raises(ValidationError):
        Calibration.model_validate({"temperature": 0.0, "fitted_on": {"split": "val", "n": 1}})
    with pytest.raises(ValidationError):
        Sampling.model_validate({"steps": 0, "step_size": 1.0, "noise_std": 0.01})
    assert Sampling(steps=5, step_size=1.0, noise_std=0.0).clamp == (-1.0, 1.0)


def test_draft_validation(make_draft: Any) -> None:
    with pytest.raises(ValidationError, match="unique"):
        ManifestDraft.model_validate(make_draft(class_names=["a", "a"]))
    with pytest.raises(ValidationError):
        ManifestDraft.model_validate(make_draft(stage="draft"))
    with pytest.raises(ValidationError):
        ManifestDraft.model_validate(make_draft(training={"not json": object()}))


def test_code_version_in_this_checkout() -> None:
    version = code_version()
    assert version.package is not None
    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=False
    )
    if head.returncode == 0:
        assert version.git_commit == head.stdout.strip()
        assert version.dirty is not None


def test_code_version_outside_git(tmp_path: Path) -> None:
    assert code_version(tmp_path) == CodeVersion(
        git_commit=None, dirty=None, package=code_version().package
    )


def test_explicit_code_version_is_kept(store: ModelStore, model: Any, make_draft: Any) -> None:
    given = {"git_commit": "abc123", "dirty": False, "package": "9.9.9"}
    ref = store.save("digits", model, make_draft(code_version=given))
    assert store.manifest(ref).code_version.model_dump() == given
