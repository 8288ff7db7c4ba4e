from __future__ import annotations

import pytest

from training.config import ConfigError, TrainConfig, apply_overrides
from training.presets import PRESETS, preset


def test_every_preset_builds() -> None:
    for name in PRESETS:
        assert isinstance(preset(name), TrainConfig)
    with pytest.raises(ConfigError, match="known presets: digits-jem"):
        preset("imagenet")


def test_baseline_differs_from_jem_only_in_the_generative_term() -> None:
    jem, base = preset("digits-jem").to_dict(), preset("digits-baseline").to_dict()
    differing = {k for k in jem if jem[k] != base[k]}
    # the generative term and its schedule (px_start, px_warmup: nothing without px_weight), and
    # the seed: the shipped JEM is the recipe's seed-1 run, chosen on validation (docs/training.md,
    # "Ninth round"), its baseline the seed-0 run
    assert differing <= {"px_weight", "energy_reg", "grad_penalty", "px_start", "px_warmup", "seed"}
    assert (jem["seed"], base["seed"]) == (1, 0)
    assert base["px_weight"] == 0.0
    assert jem["px_weight"] > 0


def test_emoji_baseline_is_the_jem_recipe_without_the_generative_terms_plus_smoothing() -> None:
    jem, base = preset("emoji-jem").to_dict(), preset("emoji-baseline").to_dict()
    differing = {k for k in jem if jem[k] != base[k]}
    # label smoothing won for the baseline on validation; the JEM with it did not (docs/emoji.md,
    # seventh round), so the shipped pair differs by it
    assert differing == {"px_weight", "energy_reg", "label_smoothing"}
    assert (base["px_weight"], base["label_smoothing"]) == (0.0, 0.1)
    assert (jem["px_weight"], jem["label_smoothing"]) == (0.3, 0.0)


def test_cifar_preset_is_the_papers_recipe() -> None:
    cfg = preset("cifar10-wrn")
    assert (cfg.lr, cfg.batch_size, cfg.warmup_iters) == (1e-4, 64, 1000)
    assert (cfg.sgld_steps, cfg.sgld_step_size, cfg.sgld_noise) == (20, 1.0, 0.01)
    assert (cfg.buffer_size, cfg.reinit_freq, cfg.data_noise) == (10000, 0.05, 0.03)
    assert cfg.decay_factor == 0.3
    assert cfg.backbone_kwargs["depth"] == 28
    assert cfg.backbone_kwargs["widen_factor"] == 10


def test_overrides_parse_each_type() -> None:
    cfg = apply_overrides(
        preset("digits-jem"),
        [
            "lr=3e-4",
            "iterations=12",
            "sgld_clamp=false",
            "decay_at=100,200",
            'backbone_kwargs={"width": 8}',
            "buffer_init=gaussian",
            "data_root=none",
            "device=cpu",
        ],
    )
    assert cfg.lr == 3e-4
    assert cfg.iterations == 12
    assert cfg.sgld_clamp is False
    assert cfg.decay_at == (100.0, 200.0)
    assert cfg.backbone_kwargs == {"width": 8}
    assert cfg.buffer_init == "gaussian"
    assert cfg.data_root is None
    assert cfg.device == "cpu"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("learning_rate=1", "unknown config key 'learning_rate'; valid keys: dataset,"),
        ("lr", "not key=value"),
        ("iterations=ten", "iterations is int"),
        ("sgld_clamp=maybe", "use true or false"),
        ("buffer_init=normal", "must be one of 'uniform', 'gaussian'"),
        ("augment=crops", r"augment must be one of .* \(did you mean 'crop'\?\)"),
        ("image_size=16x16", "image_size is height,width or one number, e.g. 32,32 or 32"),
        ("decay_at=0.5,x", "decay_at is a comma-separated list of floats"),
        ("extra_train=v9", "must be one of '', 'rendered-digits-v1'"),
        ("backbone_kwargs=[1]", "JSON object"),
        ("lr=-1", "lr must be > 0"),
        ("grad_penalty=-0.5", "grad_penalty must be >= 0"),
        ("buffer_init_pool=0", "buffer_init_pool must be >= 1"),
        ("label_smoothing=1", r"label_smoothing must be in \[0, 1\)"),
        ("label_smoothing=-0.1", r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_bad_overrides_say_what_is_valid(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset("digits-jem"), [override])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "background",
            "whte",
            "background must be 'auto', 'white', .* \\(did you mean 'white'\\?\\)",
        ),
        ("background", "#ffff", "background must be"),
        (
            "dataset",
            "digts",
            "unknown data set 'digts'; known: digits, .* \\(did you mean 'digits'\\?\\)",
        ),
        ("backbone", "wrn-16-4", "unknown backbone 'wrn-16-4'; known: auto, digits_cnn, wrn"),
        ("device", "cuad", "device must be 'auto', 'cpu', 'cuda'"),
        ("augment", "crops", "augment must be one of 'none', .* \\(did you mean 'crop'\\?\\)"),
        ("amp", "fp16", "amp must be one of 'auto', 'bf16', 'off'"),
    ],
)
def test_string_settings_are_checked_from_every_source(key: str, value: str, message: str) -> None:
    """A config built from a dict (a sweep plan's table, a manifest) is checked as a --set is:
    a typo is one ConfigError before any data is read, with the closest spelling."""
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({**preset("digits-jem").to_dict(), key: value})


def test_string_settings_accept_every_documented_form() -> None:
    for key, value in [
        ("background", "#0a0B0c"),
        ("background", "black"),
        ("device", "cuda:1"),
        ("device", "mps"),
        ("backbone", "wrn"),
        ("dataset", "folder"),
    ]:
        assert getattr(TrainConfig.from_dict({key: value}), key) == value


def test_a_literal_given_in_another_case_is_the_one_it_can_only_mean() -> None:
    assert apply_overrides(preset("folder-jem"), ["color_mode=rgb"]).color_mode == "RGB"


def test_round_trip_and_schedule_points() -> None:
    cfg = preset("digits-jem")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown config keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    cfg = apply_overrides(cfg, ["decay_at=0.5,150", "epochs=2", "batch_size=10"])
    assert cfg.decay_iterations(100) == [50, 150]
    assert cfg.total_iterations(55) == 11


def test_learning_rate_schedules() -> None:
    from training.build import lr_multiplier

    step = apply_overrides(preset("digits-jem"), ["warmup_iters=10", "decay_at=0.5,0.8"])
    at = lr_multiplier(step, 100)
    assert [at(s) for s in (0, 9, 49, 50, 80, 99)] == pytest.approx(
        [0.1, 1.0, 1.0, 0.3, 0.09, 0.09]
    )
    cosine = apply_overrides(step, ["lr_schedule=cosine"])  # decay_at is ignored
    at = lr_multiplier(cosine, 110)
    assert [at(s) for s in (0, 9, 10, 60, 110)] == pytest.approx([0.1, 1.0, 1.0, 0.5, 0.0])
    assert all(at(s) >= at(s + 1) for s in range(10, 110))


def test_extra_train_accepts_exactly_the_rendered_digit_sources() -> None:
    """The config's `extra_train` values (a Literal, for mypy and the CLI's error) are the data
    sources `training.datasets.rendered_digits.SOURCES` defines, and "" (none)."""
    import typing

    from training.datasets.rendered_digits import SOURCES

    hint = typing.get_type_hints(TrainConfig)["extra_train"]
    assert set(typing.get_args(hint)) == {"", *SOURCES}
