"""`calibrate`: fitted on validation only, thresholds at the 95th percentile, a new version."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from jem.metrics import fit_temperature
from jem.ood import OOD_SCORES, ood_scores
from model_store import InputSpecEntry, ManifestDraft, ModelRef, ModelStore
from tests.training._tiny_model import train_tiny
from training import calibrate as calibrate_module
from training.calibrate import calibrate, fit_calibration
from training.data import Dataset
from training.eval_metrics import dataset_for

# trains a tiny model once for the module (a few seconds)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelStore, ModelRef]:
    root = tmp_path_factory.mktemp("store")
    return ModelStore(root), train_tiny(root)


def test_calibrate_publishes_a_new_version_fitted_on_validation(
    tiny: tuple[ModelStore, ModelRef],
) -> None:
    store, ref = tiny
    new_ref, manifest = calibrate(store, ref)
    assert new_ref == ModelRef(ref.name, ref.version + 1)
    assert store.list_versions(ref.name)[-2:] == [ref.version, new_ref.version]
    assert manifest.parent == str(ref)
    old = store.manifest(ref)
    assert old.calibration is None  # the parent version is left as it was

    cal = manifest.calibration
    assert cal is not None
    loaded = store.load(new_ref)
    data = dataset_for(manifest)
    x_val, y_val = data.val.inputs(), data.val.labels
    assert (cal.fitted_on.split, cal.fitted_on.n, cal.fitted_on.seed) == (
        "validation",
        len(y_val),
        0,
    )
    with torch.no_grad():
        assert cal.temperature == pytest.approx(fit_temperature(loaded.model(x_val), y_val))
    scores = ood_scores(loaded.model, x_val, temperature=cal.temperature)
    for name in OOD_SCORES:
        s = scores[name].double().numpy()
        assert cal.scores[name].threshold == pytest.approx(np.quantile(s, 0.95), rel=1e-5)
        assert np.mean(s <= cal.scores[name].threshold) == pytest.approx(0.95, abs=1 / len(s))
        assert cal.scores[name].quantiles[0] == pytest.approx(s.min(), rel=1e-5)
        assert cal.scores[name].quantiles[100] == pytest.approx(s.max(), rel=1e-5)
        assert len(cal.scores[name].quantiles) == 101

    test = manifest.metrics["test"]
    assert isinstance(test, dict)
    assert test["split"] == "test"
    assert test["n"] == len(data.test)
    assert 0.5 < float(test["accuracy"]) <= 1.0  # type: ignore[arg-type]
    # the summary the service shows, read only here (train never reads the test split)
    assert manifest.metrics["test_accuracy"] == test["accuracy"]
    assert "test_accuracy" not in store.load(ref).manifest.metrics
    # the weights, buffer and artefacts travel to the new version unchanged
    parent = store.load(ref)
    for a, b in zip(
        parent.model.state_dict().values(), loaded.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert loaded.buffer is not None
    assert parent.buffer is not None
    assert torch.equal(loaded.buffer["x"], parent.buffer["x"])
    assert store.read_file(new_ref, "samples.png") == store.read_file(ref, "samples.png")


def test_test_data_never_changes_the_calibration(
    tiny: tuple[ModelStore, ModelRef], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, ref = tiny
    real = dataset_for(store.manifest(ref))
    noise = torch.randint(
        0,
        256,
        real.test.images.shape,
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(0),
    )
    perturbed = dataclasses.replace(real, test=dataclasses.replace(real.test, images=noise))

    def rebuilt(manifest: object, data_root: object = None) -> Dataset:
        return perturbed

    _, clean = calibrate(store, ref)
    monkeypatch.setattr(calibrate_module, "dataset_for", rebuilt)
    _, shifted = calibrate(store, ref)
    assert clean.calibration == shifted.calibration
    # ... while the test metrics, which are measured on it, do change
    assert clean.metrics["test"] != shifted.metrics["test"]


def test_fit_calibration_refuses_the_test_split(tiny: tuple[ModelStore, ModelRef]) -> None:
    store, ref = tiny
    model = store.load(ref).model
    with pytest.raises(ValueError, match="never on the test split"):
        fit_calibration(model, torch.zeros(4, 1, 8, 8), torch.arange(4), split_seed=0, split="test")


def test_cli_writes_a_new_version(
    tiny: tuple[ModelStore, ModelRef],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, ref = tiny
    before = store.list_versions(ref.name)[-1]
    assert calibrate_module.main([str(ref), "--store", str(store.root)]) == 0
    assert store.list_versions(ref.name)[-1] == before + 1
    out = capsys.readouterr().out
    assert f"{ref.name}:{before + 1}" in out
    # the digits' validation split has 360 images: no warning that the fit is noisy
    assert "validation images are few" not in out
    monkeypatch.setattr(calibrate_module, "SMALL_VALIDATION", 10**6)
    assert calibrate_module.main([str(ref), "--store", str(store.root)]) == 0
    assert "validation images are few: the temperature and the thresholds are noisy" in (
        capsys.readouterr().out
    )


def test_cli_warns_when_a_score_cannot_separate(
    tiny: tuple[ModelStore, ModelRef],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model saturated on its validation images: (almost) every max_softmax score the same."""
    store, ref = tiny
    assert calibrate_module.main([str(ref), "--store", str(store.root)]) == 0
    assert "separates nothing" not in capsys.readouterr().out
    real = calibrate_module.batched_scores

    def saturated(*args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        scores = real(*args, **kwargs)  # type: ignore[arg-type]
        return {**scores, "max_softmax": torch.zeros_like(scores["max_softmax"])}

    monkeypatch.setattr(calibrate_module, "batched_scores", saturated)
    assert calibrate_module.main([str(ref), "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "warning: max_softmax: 95% or more of the validation images share its lowest" in out
    assert "warning: energy" not in out


def test_cli_skip_calibrated_publishes_only_what_is_not_calibrated_yet(
    tiny: tuple[ModelStore, ModelRef], capsys: pytest.CaptureFixture[str]
) -> None:
    store, ref = tiny
    assert store.manifest(ref).calibration is None
    options = ["--store", str(store.root), "--skip-calibrated"]
    assert calibrate_module.main([str(ref), *options]) == 0
    calibrated = ModelRef(ref.name, store.list_versions(ref.name)[-1])
    assert store.manifest(calibrated).parent == str(ref)
    assert f"-> {calibrated}" in capsys.readouterr().out
    # re-run as `make evaluate-*` runs it (by name: the latest final version, now calibrated)
    assert calibrate_module.main([ref.name, *options]) == 0
    assert store.list_versions(ref.name)[-1] == calibrated.version
    out = capsys.readouterr().out
    assert f"{calibrated} is calibrated already" in out
    assert "nothing published" in out
    # a normalisation the calibrated version does not have yet still calls for one
    manifest = store.manifest(calibrated)
    assert calibrate_module.is_calibrated(manifest, manifest.input_spec.normalization)
    spec = {**manifest.input_spec.model_dump(), "normalization": None}
    unnormalised = manifest.model_copy(update={"input_spec": InputSpecEntry.model_validate(spec)})
    assert calibrate_module.is_calibrated(unnormalised)
    assert not calibrate_module.is_calibrated(unnormalised, "digits-v1")
    assert not calibrate_module.is_calibrated(store.manifest(ref))


def test_calibrate_can_adopt_an_input_normalisation(tiny: tuple[ModelStore, ModelRef]) -> None:
    store, ref = tiny
    loaded = store.load(ref)
    # a model saved before the field existed: no normalisation in its manifest
    spec = {**loaded.manifest.input_spec.model_dump(), "normalization": None}
    draft = ManifestDraft.from_manifest(loaded.manifest, input_spec=spec)
    old_ref = store.save(ref.name, loaded.model, draft, buffer=loaded.buffer)
    assert store.load(old_ref).input_spec.normalization is None
    # evaluated and calibrated with the model's own spec, not the data set's
    assert dataset_for(store.manifest(old_ref)).spec.normalization is None
    _, kept = calibrate(store, old_ref)
    assert kept.input_spec.normalization is None
    new_ref, adopted = calibrate(store, old_ref, normalization="digits-v1")
    assert adopted.input_spec.normalization == "digits-v1"
    assert adopted.parent == str(old_ref)
    assert store.load(new_ref).input_spec.normalization == "digits-v1"
