"""`python -m bench.ab`: a per-variant setting must name a variant that is being served."""

from __future__ import annotations

import pytest

from bench import ab


@pytest.mark.parametrize(
    "setting", ["two:JEM_WORKERS=2", "one-JEM_WORKERS=2", "one:JEM_WORKERS", ":JEM_WORKERS=2"]
)
def test_env_for_an_unknown_variant_or_without_a_value_is_a_usage_error(
    setting: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        ab.main(["one=.", "--env", setting])
    assert exc.value.code == 2
    assert "expected NAME:JEM_X=V" in capsys.readouterr().err
