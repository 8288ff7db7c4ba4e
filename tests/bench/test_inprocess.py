"""`python -m bench.inprocess`: the app driven over ASGI reports a rate and CPU per request."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator

import pytest

from bench.inprocess import main

_LOGGERS = ("service", "uvicorn", "uvicorn.access", "uvicorn.error")


@pytest.fixture
def own_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() sets JEM_* variables and the service's logging, as for a process of its own:
    both are put back for the tests that follow."""
    monkeypatch.setattr(os, "environ", os.environ.copy())
    saved = {}
    for name in _LOGGERS:
        log = logging.getLogger(name)
        saved[name] = (list(log.handlers), log.level, log.propagate, log.disabled)
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        log = logging.getLogger(name)
        log.handlers[:] = handlers
        log.setLevel(level)
        log.propagate = propagate
        log.disabled = disabled


@pytest.mark.slow
@pytest.mark.usefixtures("own_process_state")
def test_inprocess_run_reports_requests_and_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--images", "2", "--concurrency", "3", "--seconds", "0.5"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    found = re.fullmatch(
        r"2 PNG\(s\) per request, concurrency 3: (\d+) requests in 0.5 s, [\d,]+ requests/s, "
        r"([\d.]+) ms CPU per request",
        line,
    )
    assert found, line
    assert int(found[1]) > 0
    assert float(found[2]) > 0
