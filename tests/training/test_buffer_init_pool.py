"""``buffer_init_pool``: the trainer's Gaussian chain starts fitted at a lower resolution."""

from __future__ import annotations

from pathlib import Path

from jem import ClassGaussianInit, init_from_state_dict
from model_store import ModelStore
from tests.training._tiny import tiny_config
from training.trainer import Trainer


def test_a_pooled_gaussian_init_is_built_trained_with_and_saved(
    tmp_path: Path, one_thread: None
) -> None:
    store = ModelStore(tmp_path)
    config = tiny_config("buffer_init=gaussian", "buffer_init_pool=2")
    trainer = Trainer(config, name="run", store=store, progress=False)
    init = trainer.buffer.init
    assert isinstance(init, ClassGaussianInit)
    assert init.fitted_shape == (1, 4, 4)  # the 8x8 digits pooled 2x2
    assert init.covariance == "full"
    assert trainer.buffer.x.shape[1:] == (1, 8, 8)
    trainer.fit()
    saved = store.read_tensors(store.resolve("run"), "buffer")
    rebuilt = init_from_state_dict({k[5:]: v for k, v in saved.items() if k.startswith("init.")})
    assert isinstance(rebuilt, ClassGaussianInit)
    assert rebuilt.pool == 2
