"""`screen`: candidates compared on validation data, with the test split never read."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from model_store import ModelStore
from tests.training._tiny_model import train_tiny
from training import screen as screen_module
from training.data import Dataset, LabeledImages
from training.eval_metrics import dataset_for
from training.ood_sets import OOD_SET_NAMES
from training.screen import screen_model

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
