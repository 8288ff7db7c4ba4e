"""`screen`: candidates compared on validation data, with the test split never read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jem import ClassGaussianInit, MixedInit, UniformInit
from model_store import ModelStore
from tests.training._tiny_model import train_tiny
from training import screen as screen_module
from training.cli import main as training_main
from training.data import Dataset, LabeledImages, load_digits_dataset
from training.eval_metrics import dataset_for
from training.ood_sets import OOD_SET_NAMES
from training.screen import screen_model
from training.screen_samples import (
    SAMPLE_SEED_OFFSET,
    SampleSetting,
    judged_samples,
    pixel_judge_for,
)

# trains two tiny models (a few seconds)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    root = tmp_path_factory.mktemp("store")
    train_tiny(root, name="short", steps=5)
    train_tiny(root, name="long", steps=60)
    return ModelStore(root)


class _Untouchable(LabeledImages):
    def inputs(self, index: torch.Tensor | None = None) -> torch.Tensor:
        raise AssertionError("screen read the test split")


def _without_test(dataset: Dataset) -> Dataset:
    test = _Untouchable(dataset.test.images, dataset.test.labels, dataset.spec)
    return dataclasses.replace(dataset, test=test)


def test_screen_never_reads_the_test_split_and_ranks_the_better_model(store: ModelStore) -> None:
    rows = {}
    for name in ("short", "long"):
        loaded = store.load(name)
        rows[name] = screen_model(loaded, _without_test(dataset_for(loaded.manifest)))
    long, short = rows["long"], rows["short"]
    assert long["n"] == len(dataset_for(store.manifest("long")).val)
    assert long["accuracy"] > short["accuracy"] + 0.2  # 60 steps of cross-entropy vs 5
    for r in rows.values():
        assert 0.0 <= r["ece_calibrated_crossfit"] <= 1.0
        assert set(r["auroc"]) == set(OOD_SET_NAMES)
        for per_score in r["auroc"].values():
            assert all(0.0 <= v <= 1.0 for v in per_score.values())


def test_screen_cli_prints_one_row_per_model(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert screen_module.main(["short", "long:1", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "| short:1 |" in out
    assert "| long:1 |" in out
    assert "ECE cal. (cross-fit)" in out


def test_the_screen_ood_sets_differ_from_the_reports() -> None:
    assert screen_module.SCREEN_OOD_SEED != 0  # evaluate's default --seed


def test_screen_scores_an_ood_folder_given_with_ood(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "blocks"
    folder.mkdir()
    for k in range(6):  # 8x8 greyscale squares, half black and half white
        pixels = np.zeros((8, 8), dtype=np.uint8)
        pixels[:, : k + 1] = 255
        Image.fromarray(pixels, "L").save(folder / f"{k}.png")
    args = ["long", "--store", str(store.root), "--ood", f"blocks={folder}"]
    assert screen_module.main(args) == 0
    assert "blocks" in capsys.readouterr().out
    loaded = store.load("long")
    row = screen_model(loaded, dataset_for(loaded.manifest), ood_folders={"blocks": folder})
    assert set(row["auroc"]) == {*OOD_SET_NAMES, "blocks"}


def test_ood_folder_mistakes_are_one_line_errors(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage and one error line
        training_main(["screen", "long", "--store", str(store.root), "--ood", "noequals"])
    assert exit_info.value.code == 2
    assert "expected NAME=FOLDER" in capsys.readouterr().err.splitlines()[-1]
    missing = tmp_path / "missing"
    code = training_main(["screen", "long", "--store", str(store.root), "--ood", f"x={missing}"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ood:")
    assert err.count("\n") == 1


@pytest.fixture(scope="module")
def gaussian_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    root = tmp_path_factory.mktemp("gaussian-store")
    train = load_digits_dataset(seed=0).train
    gaussian = ClassGaussianInit.fit(train.inputs(), train.labels, 10)
    train_tiny(root, name="g", steps=60, init=MixedInit(gaussian, UniformInit(), 0.5))
    return ModelStore(root)


def test_screen_samples_are_judged_with_a_seed_the_report_does_not_use(store: ModelStore) -> None:
    loaded = store.load("long")
    dataset = _without_test(dataset_for(loaded.manifest))
    judge = pixel_judge_for(loaded, dataset)
    assert judge.fitted_on == {"split": "train", "n": len(dataset.train)}
    setting = SampleSetting(steps=3, per_class=4)
    first = judged_samples(loaded, judge, setting, SAMPLE_SEED_OFFSET)
    assert SAMPLE_SEED_OFFSET != 0  # evaluate's default --seed
    assert first == judged_samples(loaded, judge, setting, SAMPLE_SEED_OFFSET)  # seeded
    assert first["n"] == 40
    assert first["steps"] == 3
    assert first["init"] == "noise"
    assert first["step_size"] == 1.0
    assert first["noise_std"] == 0.01
    assert 0.0 <= first["svc_pixels"] <= 1.0
    faster = judged_samples(loaded, judge, SampleSetting(3, step_size=5.0), SAMPLE_SEED_OFFSET)
    assert faster["step_size"] == 5.0
    assert faster["energy"] < first["energy"]


def test_class_gaussian_starts_are_smooth_and_read_as_their_class(
    gaussian_store: ModelStore,
) -> None:
    loaded = gaussian_store.load("g")
    dataset = dataset_for(loaded.manifest)
    judge = pixel_judge_for(loaded, dataset)
    noise = judged_samples(loaded, judge, SampleSetting(0, init="noise"), 1)
    gaussian = judged_samples(loaded, judge, SampleSetting(0, init="gaussian"), 1)
    # uniform noise on [-1, 1]: neighbours differ by 2/3 on average; class means are digits
    assert noise["roughness"] == pytest.approx(2 / 3, abs=0.03)
    assert gaussian["roughness"] < noise["roughness"]
    assert gaussian["svc_pixels"] > 0.5  # 10 classes: chance is 0.1


def test_screen_cli_prints_the_samples_table(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["long", "--store", str(store.root), "--samples", "0", "2", "--per-class", "2"]
    assert screen_module.main([*args, "--sample-step-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "judged (pixel SVC)" in out
    assert "| long:1 | noise | 0 | 2 | 0.01 | 1 | 20 |" in out
    assert "| long:1 | noise | 2 | 2 | 0.01 | 1 | 20 |" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--samples", "-1"], "steps must be >= 0"),
        (["--samples", "2", "--per-class", "0"], "per_class must be >= 1"),
        (["--samples", "2", "--sample-init", "gaussian"], "has no class Gaussians"),
    ],
)
def test_sample_mistakes_are_one_line_errors(
    store: ModelStore, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert training_main(["screen", "long", "--store", str(store.root), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert err.count("\n") == 1
