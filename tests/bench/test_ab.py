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


def test_mean_batch_is_read_from_the_service_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.metrics import Metrics

    metrics = Metrics()
    for size in (3, 5):
        metrics.batch_size.labels("digits-jem").observe(size)
    metrics.batch_size.labels("emoji-jem").observe(4)

    class _Response:
        text = metrics.exposition().decode()

    monkeypatch.setattr(ab.httpx, "get", lambda url, timeout: _Response())
    assert ab._batches("http://server") == (12.0, 3.0)
