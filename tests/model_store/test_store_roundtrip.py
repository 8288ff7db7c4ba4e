"""Save then load: the same outputs, the same manifest, every optional file back intact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import model_store
from jem import JEM, create_backbone
from model_store import (
    Calibration,
    FittedOn,
    IncompatibleWeights,
    Manifest,
    ManifestDraft,
    ModelRef,
    ModelStore,
    Sampling,
    ScoreCalibration,
    VersionExists,
)


def full_draft(make_draft: Any) -> dict[str, Any]:
    calibration = Calibration(
        temperature=1.7,
        fitted_on=FittedOn(split="val", n=500, seed=3),
        scores={
            "energy": ScoreCalibration.from_scores([float(i) for i in range(200)]),
            "max_softmax": ScoreCalibration.from_scores([i / 100 for i in range(100)], 0.9),
        },
    )
    return make_draft(
        metrics={"accuracy": 0.93, "ece": {"raw": 0.05, "calibrated": 0.01}},
        calibration=calibration.model_dump(),
        sampling=Sampling(steps=20, step_size=1.0, noise_std=0.01).model_dump(),
        parent="digits-jem:3",
    )


def test_round_trip_same_logits_and_manifest(
    store: ModelStore, model: JEM, make_draft: Any
) -> None:
    draft = full_draft(make_draft)
    ref = store.save("digits", model, draft)
    assert ref == ModelRef("digits", 1)
    assert str(ref) == "digits:1"

    loaded = store.load("digits")
    assert loaded.ref == ref
    assert not loaded.model.training
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    saved, restored = model.state_dict(), loaded.model.state_dict()
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[k], restored[k]) for k in saved)  # bit-identical weights
    with torch.no_grad():  # the loaded copy runs channels-last on CPU: equal up to rounding
        torch.testing.assert_close(loaded.model(x), model(x), rtol=1e-5, atol=1e-6)

    m = loaded.manifest
    expected = ManifestDraft.model_validate(draft).model_dump(exclude={"code_version"})
    assert m.model_dump(include=set(expected)) == expected
    assert (m.format_version, m.name, m.version) == (model_store.FORMAT_VERSION, "digits", 1)
    assert m.created_at.utcoffset() is not None
    assert m.code_version.package is not None  # filled in by the store
    assert set(m.files) == {"weights.safetensors"}
    assert loaded.buffer is None
    assert loaded.path == store.root / "digits" / "1"
    assert loaded.input_spec.shape == (1, 8, 8)
    # The file on disk parses back to the same manifest.
    on_disk = Manifest.model_validate_json((loaded.path / "manifest.json").read_bytes())
    assert on_disk == m


def test_optional_buffer_tensors_and_files(store: ModelStore, model: JEM, make_draft: Any) -> None:
    # A transposed (non-contiguous) tensor and integer labels, as a replay buffer may hold.
    buffer = {"x": torch.randn(8, 8, 1, 16).permute(3, 2, 0, 1), "labels": torch.arange(16) % 10}
    state = {"step": torch.tensor(120), "lr": torch.tensor([0.1, 0.01])}
    png = b"\x89PNG\r\n\x1a\nnot really a png"
    ref = store.save(
        "digits",
        model,
        make_draft(),
        buffer=buffer,
        tensors={"training_state": state},
        files={"samples.png": png, "report.md": b"# report\n", "training_state.json": b"{}"},
    )
    loaded = store.load(ref)
    assert loaded.buffer is not None
    assert loaded.buffer.keys() == buffer.keys()
    assert all(torch.equal(loaded.buffer[k], v) for k, v in buffer.items())
    for filename in ("training_state", "training_state.safetensors"):
        back = store.read_tensors(ref, filename)
        assert all(torch.equal(back[k], v) for k, v in state.items())
    assert store.read_file(ref, "samples.png") == png
    assert json.loads(store.read_file(ref, "training_state.json")) == {}
    assert set(loaded.manifest.files) == {
        "weights.safetensors",
        "buffer.safetensors",
        "training_state.safetensors",
        "samples.png",
        "report.md",
        "training_state.json",
    }


def test_versions_increment_and_are_immutable(
    store: ModelStore, model: JEM, make_draft: Any
) -> None:
    assert [store.save("digits", model, make_draft()).version for _ in range(3)] == [1, 2, 3]
    assert store.save("digits", model, make_draft(), version=7).version == 7
    assert store.save("digits", model, make_draft()).version == 8
    with pytest.raises(VersionExists, match="immutable"):
        store.save("digits", model, make_draft(), version=2)
    assert store.list_versions("digits") == [1, 2, 3, 7, 8]
    assert store.list_models() == ["digits"]


def test_draft_object_and_from_manifest(store: ModelStore, model: JEM, make_draft: Any) -> None:
    first = store.load(store.save("digits", model, ManifestDraft.model_validate(make_draft())))
    draft = ManifestDraft.from_manifest(first.manifest, parent=str(first.ref), stage="final")
    second = store.load(store.save("digits", first.model, draft))
    assert second.manifest.parent == "digits:1"
    assert second.manifest.backbone == first.manifest.backbone
    # A full Manifest passed as the draft is re-described, not copied (new version and files).
    third = store.save("digits", first.model, second.manifest)
    assert store.manifest(third).version == 3


def test_save_refuses_a_manifest_that_cannot_rebuild_the_model(
    store: ModelStore, model: JEM, make_draft: Any
) -> None:
    wrong_width = make_draft(backbone={"name": "digits_cnn", "kwargs": {"width": 16}})
    with pytest.raises(IncompatibleWeights, match="wrong shapes"):
        store.save("digits", model, wrong_width)
    with pytest.raises(IncompatibleWeights, match="missing"):
        store.save("digits", model.backbone, make_draft())  # a bare backbone, not the JEM
    with pytest.raises(ValueError, match="unknown backbone"):
        store.save("digits", model, make_draft(backbone={"name": "nope", "kwargs": {}}))
    with pytest.raises(ValueError, match="cannot take kwargs"):
        store.save("digits", model, make_draft(backbone={"name": "digits_cnn", "kwargs": {"x": 1}}))
    with pytest.raises(ValueError, match="class_names"):
        store.save("digits", model, make_draft(class_names=["a", "b"]))
    assert store.list_models() == []


def test_save_refuses_bad_drafts_and_file_names(
    store: ModelStore, model: JEM, make_draft: Any
) -> None:
    with pytest.raises(ValueError, match="extra"):
        store.save("digits", model, make_draft(name="other"))  # the store names versions
    with pytest.raises(ValueError, match="channels"):
        store.save(
            "digits",
            model,
            make_draft(input_spec={"channels": 3, "height": 8, "width": 8, "color_mode": "L"}),
        )
    for files in ({"weights.safetensors": b""}, {"x.safetensors": b""}, {"../x.md": b""}):
        with pytest.raises(ValueError):
            store.save("digits", model, make_draft(), files=files)
    with pytest.raises(TypeError, match="tensors only"):
        store.save("digits", model, make_draft(), buffer={"step": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="reserved"):
        store.save("digits", model, make_draft(), tensors={"buffer": {"x": torch.zeros(1)}})
    assert not store.root.exists()  # every check runs before anything is written


def test_root_from_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(model_store.ENV_VAR, str(tmp_path))
    assert ModelStore().root == tmp_path.resolve()
    monkeypatch.delenv(model_store.ENV_VAR)
    assert ModelStore().root == Path(model_store.__file__).resolve().parent / "models"
    assert model_store.default_root() == ModelStore().root


def test_load_to_device_and_wide_backbone(store: ModelStore, make_draft: Any) -> None:
    torch.manual_seed(0)
    wrn_kwargs = {"depth": 10, "widen_factor": 1, "in_channels": 1}
    wrn = JEM(create_backbone("wrn", **wrn_kwargs)).eval()
    draft = make_draft(backbone={"name": "wrn", "kwargs": wrn_kwargs})
    loaded = store.load(store.save("wrn", wrn, draft), device=torch.device("cpu"))
    x = torch.zeros(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), wrn(x), rtol=1e-5, atol=1e-6)
    assert next(loaded.model.parameters()).device.type == "cpu"
    conv = next(p for p in loaded.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)  # jem.use_fast_layout on CPU


def test_public_names() -> None:
    for name in model_store.__all__:
        assert hasattr(model_store, name), name
