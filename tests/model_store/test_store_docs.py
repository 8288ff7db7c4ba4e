"""docs/model_store.md's example runs, and its tables name every manifest field and error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import model_store
from model_store import (
    BackboneSpec,
    Calibration,
    CodeVersion,
    FittedOn,
    InputSpecEntry,
    Manifest,
    Sampling,
    ScoreCalibration,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "model_store.md"


def test_python_example_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(model_store.ENV_VAR, str(tmp_path))
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], str(DOC), "exec"), {})
    store = model_store.ModelStore()
    assert store.resolve("digits-demo:production") == model_store.ModelRef("digits-demo", 1)
    assert store.read_file("digits-demo", "report.md") == b"# digits-demo\n"


def test_every_manifest_field_is_documented() -> None:
    text = DOC.read_text()
    for name in Manifest.model_fields:
        assert f"`{name}" in text, name
    nested = (BackboneSpec, InputSpecEntry, CodeVersion, Calibration, FittedOn, ScoreCalibration)
    for model in (*nested, Sampling):
        for name in model.model_fields:
            assert re.search(rf"[`.]{name}[`.]", text), (model.__name__, name)


def test_every_error_is_documented() -> None:
    text = DOC.read_text()
    for name in model_store.__all__:
        obj = getattr(model_store, name)
        if isinstance(obj, type) and issubclass(obj, model_store.StoreError):
            assert f"{name}`" in text, name
