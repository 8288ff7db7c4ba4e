"""``buffer_init_pool`` and ``buffer_init_uniform``: the trainer's chain starts (jem.buffer)."""

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


def test_buffer_init_uniform_mixes_uniform_restarts_into_the_gaussian_init(
    tmp_path: Path, one_thread: None
) -> None:
    from jem import MixedInit

    config = tiny_config("buffer_init=gaussian", "buffer_init_pool=2", "buffer_init_uniform=0.5")
    trainer = Trainer(config, name="run", store=ModelStore(tmp_path), progress=False)
    init = trainer.buffer.init
    assert isinstance(init, MixedInit)
    assert init.uniform_fraction == 0.5
    assert init.gaussian.pool == 2
