"""Settings from JEM_* variables, and the command line built on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import uvicorn
from pydantic import ValidationError

from service.__main__ import _parser, _prepare_multiprocess_dir
from service.settings import Settings


def test_defaults_are_sane() -> None:
    s = Settings()
    assert s.models == ["digits-jem", "emoji-jem"]
    assert s.api_keys == []
    assert 1 <= s.max_batch_size <= 256
    assert s.max_wait_ms <= 50
    assert s.max_body_bytes >= 1024 * 1024
    assert s.max_image_pixels >= 1_000_000
    assert s.generation_concurrency >= 1
    assert s.generation_time_budget_s <= 600


def test_environment_with_prefix_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JEM_MODELS", "digits-jem, digits-baseline:2")
    monkeypatch.setenv("JEM_API_KEYS", "k3y-x,k3y-y")
    monkeypatch.setenv("JEM_MAX_BATCH_SIZE", "64")
    monkeypatch.setenv("JEM_MODEL_STORE", "/tmp/store")
    monkeypatch.setenv("JEM_PORT", "9001")
    s = Settings()
    assert s.models == ["digits-jem", "digits-baseline:2"]
    assert s.api_key_bytes() == [b"k3y-x", b"k3y-y"]
    assert "k3y" not in repr(s)  # keys are secrets
    assert s.max_batch_size == 64
    assert s.model_store == Path("/tmp/store")
    args = _parser(s).parse_args([])
    assert (args.port, args.host) == (9001, "127.0.0.1")
    assert _parser(s).parse_args(["--port", "1234", "--workers", "3"]).workers == 3


def test_bad_values_fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JEM_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="max_batch_size"):
        Settings()
    monkeypatch.delenv("JEM_MAX_BATCH_SIZE")
    monkeypatch.setenv("JEM_MODELS", " , ")
    with pytest.raises(ValidationError, match="at least one model"):
        Settings()


def test_a_model_name_given_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests route by name, so a second version of a name would be loaded and never served
    monkeypatch.setenv("JEM_MODELS", "digits-jem:10,emoji-jem,digits-jem")
    with pytest.raises(ValidationError, match=r"names digits-jem more than once"):
        Settings()
    monkeypatch.setenv("JEM_MODELS", "digits-jem:10,digits-baseline:6")
    assert Settings().models == ["digits-jem:10", "digits-baseline:6"]


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("digits-jem:01", "versions are positive integers without leading zeros"),
        ("Digits JEM", "invalid model name"),
        ("digits-jem,emoji-jem:", "invalid"),
    ],
)
def test_a_malformed_model_reference_is_refused_before_serving(
    monkeypatch: pytest.MonkeyPatch, models: str, message: str
) -> None:
    # the store's own parser: the same message as `model_store` gives, before uvicorn starts
    monkeypatch.setenv("JEM_MODELS", models)
    with pytest.raises(ValidationError, match=rf"JEM_MODELS: .*{message}"):
        Settings()


def test_a_misspelt_variable_gets_a_hint() -> None:
    from service.settings import misspelt_variables

    hints = misspelt_variables(["JEM_MAX_BATCH_SZE", "JEM_IMAGE", "JEM_WORKERS", "PATH"])
    assert hints == [
        "JEM_MAX_BATCH_SZE is not a setting and is ignored: did you mean JEM_MAX_BATCH_SIZE?"
    ]


def test_bad_settings_are_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m service` with a bad JEM_* variable or `--model` list: one line on stderr
    naming what was wrong, exit 2, before anything is served."""
    import service.__main__ as cli

    monkeypatch.setattr(cli, "serve", lambda config: pytest.fail("served"))
    monkeypatch.setenv("JEM_MAX_BATCH_SIZE", "0")
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    # the variable as set, and its value
    assert err.startswith(
        "python -m service: error: JEM_MAX_BATCH_SIZE='0': Input should be greater"
    )
    monkeypatch.setenv("JEM_MAX_BATCH_SIZE", "32")
    monkeypatch.setenv("JEM_LOG_LEVEL", "LOUD")
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2
    assert "JEM_LOG_LEVEL='LOUD': Input should be 'DEBUG', 'INFO'" in capsys.readouterr().err
    monkeypatch.setenv("JEM_LOG_LEVEL", "debug")  # any case
    assert cli._settings().log_level == "DEBUG"
    monkeypatch.delenv("JEM_LOG_LEVEL")
    monkeypatch.delenv("JEM_MAX_BATCH_SIZE")
    monkeypatch.setenv("JEM_MODELS", "digits-jem")  # restored after main() overwrites it
    with pytest.raises(SystemExit) as exited:
        cli.main(["--model", "digits-jem:10", "--model", "digits-jem:39"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "digits-jem more than once (digits-jem:10, digits-jem:39)" in err


def test_multiprocess_dir_is_created_and_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    _prepare_multiprocess_dir(2)
    assert list(directory.iterdir()) == []


def test_image_pixel_limit_stays_below_pillows_bomb_guard() -> None:
    """Decoding skips warnings.catch_warnings (not thread-safe): our own limit must refuse
    every image Pillow would only warn about, so it may not exceed Pillow's."""
    from PIL import Image

    assert Image.MAX_IMAGE_PIXELS is not None
    Settings(max_image_pixels=Image.MAX_IMAGE_PIXELS)
    with pytest.raises(ValidationError, match="max_image_pixels"):
        Settings(max_image_pixels=Image.MAX_IMAGE_PIXELS + 1)


def test_store_and_models_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`python -m service --store DIR --model A --model B` is JEM_MODEL_STORE / JEM_MODELS,
    handed to the app (and to every worker) through the environment."""
    import service.__main__ as cli

    # set first, so that monkeypatch restores them after main() overwrites them
    monkeypatch.setenv("JEM_MODEL_STORE", "/elsewhere")
    monkeypatch.setenv("JEM_MODELS", "other")
    served: list[uvicorn.Config] = []
    monkeypatch.setattr(cli, "serve", lambda config: served.append(config) or 0)
    with pytest.raises(SystemExit) as exited:
        cli.main(
            ["--store", str(tmp_path), "--model", "mine:2", "--model", "digits-jem", "--port", "1"]
        )
    assert exited.value.code == 0
    settings = Settings()
    assert settings.model_store == tmp_path
    assert settings.models == ["mine:2", "digits-jem"]
    assert served[0].port == 1
