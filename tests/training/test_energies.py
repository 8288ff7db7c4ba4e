"""`energies`: each set's energy and roughness, the buffer's, and SGLD descents, on validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from jem.buffer import ClassGaussianInit, ReplayBuffer
from model_store import ModelStore
from tests.training._tiny_model import train_tiny
from training.cli import main as training_main
from training.energies import energy_table
from training.eval_metrics import dataset_for
from training.ood_sets import make_ood_sets
from training.screen import SCREEN_OOD_SEED

# trains one tiny model (about a second)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    root = tmp_path_factory.mktemp("store")
    train_tiny(root, name="tiny", steps=30)
    return ModelStore(root)


def test_energy_table_has_every_set_the_buffer_and_descents_that_lower_the_energy(
    store: ModelStore,
) -> None:
    loaded = store.load("tiny")
    dataset = dataset_for(loaded.manifest)
    x_val = dataset.val.inputs()
    sets = make_ood_sets(x_val, dataset.spec, seed=SCREEN_OOD_SEED)
    rows = {r["set"]: r for r in energy_table(loaded, x_val, sets, sgld_steps=(20,))}
    assert next(iter(rows)) == "validation"
    assert rows["validation"]["auroc"] is None
    assert rows["validation"]["n"] == len(x_val)
    for name in (*sets, "buffer chains", "fresh init draws"):
        assert 0.0 <= rows[name]["auroc"] <= 1.0
        assert rows[name]["p10"] <= rows[name]["median"] <= rows[name]["p90"]
    assert rows["constant"]["roughness"] == 0.0
    assert rows["uniform_noise"]["roughness"] > rows["validation"]["roughness"]
    # SGLD descends the energy: 20 steps from photo patches end lower than they start
    after = rows["photo_patches after 20 SGLD steps"]
    assert after["n"] == 128
    assert after["mean"] < rows["photo_patches"]["mean"]


def test_energies_cli_prints_a_table_per_model(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["energies", "tiny", "--store", str(store.root), "--sgld-steps", "2", "--threads", "1"]
    assert training_main(argv) == 0
    out = capsys.readouterr().out
    assert "### tiny:1" in out
    assert "| photo_patches after 2 SGLD steps | 128 |" in out


def test_energy_table_is_seeded_also_for_class_conditional_chain_starts(store: ModelStore) -> None:
    """The fresh starts' labels are drawn from the buffer's with the table's seed, not the global
    generator: with class Gaussians (the emoji presets') the labels decide the pixels."""
    loaded = store.load("tiny")
    dataset = dataset_for(loaded.manifest)
    x_val, y_train = dataset.val.inputs(), dataset.train.labels
    init = ClassGaussianInit.fit(dataset.train.inputs(), y_train, 10, covariance="diag")
    buffer = ReplayBuffer(40, (1, 8, 8), 10, init, generator=torch.Generator().manual_seed(0))
    loaded = dataclasses.replace(loaded, buffer=buffer.state_dict())
    tables = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        tables.append(energy_table(loaded, x_val, {}, sgld_steps=()))
    assert tables[0] == tables[1]
