"""`python -m bench.peers.fresh`: the per-second lines, the medians and the ratios it prints, and
a shortened run of its real code path with this service alone (the peer frameworks are never
installed here: choosing no peer never makes their venv, as in test_peers.py's smoke run)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bench.loadgen import LoadResult, png_bytes
from bench.models import digit_images, locate_model
from bench.peers.fresh import PHASES, medians, probe_service, ratios, summary
from bench.peers.run import SERVICE
from training.data import load_digits_dataset

FRESH, BURST, AFTER = (p.label for p in PHASES)
LINE = re.compile(
    r"  (?P<label>.+) s(?P<second>\d+): +(?P<rate>[0-9.]+) req/s, "
    r"p50 +(?P<p50>[0-9.]+) p99 +(?P<p99>[0-9.]+) ms, errors (?P<errors>\d+)"
)


def _second(rate: float) -> LoadResult:
    """A 1-s load at `rate` requests/s (the fields the summary does not read are plausible)."""
    ms = 1000 / rate if rate else 0.0
    return LoadResult(1, round(rate), 0, 1.0, rate, rate, ms, ms, ms, ms, ms, {}, round(rate))


def test_medians_summary_and_ratios_are_the_docs_columns() -> None:
    # docs/benchmarks-peers.md's first "fresh / after" row: this service 479 / 604 req/s,
    # BentoML 299 / 4 after the burst carried its learned wait: 1.60x / 151x
    service = medians(
        {
            FRESH: [_second(r) for r in (470.0, 479.0, 495.0)],
            BURST: [_second(r) for r in (30.0, 32.0)],
            AFTER: [_second(r) for r in (610.0, 604.0, 590.0, 620.0, 600.0)],
        }
    )
    assert service == {FRESH: 479.0, BURST: 31.0, AFTER: 604.0}  # in phase order
    assert list(service) == [FRESH, BURST, AFTER]
    bento = medians(
        {
            FRESH: [_second(r) for r in (305.0, 299.0, 290.0)],
            BURST: [_second(r) for r in (20.0, 25.0, 30.5)],
            AFTER: [_second(r) for r in (4.0, 5.0, 3.0)],
        }
    )
    assert summary(SERVICE, service) == (
        f"{SERVICE}: {FRESH} median 479, {BURST} median 31, {AFTER} median 604 req/s"
    )
    assert ratios({SERVICE: service, "BentoML": bento}) == [
        f"{SERVICE} / BentoML: {FRESH} 1.60x, {BURST} 1.24x, {AFTER} 151.00x"
    ]
    # a peer that answered nothing in a phase gets no ratio there, and says so
    dead = {**bento, AFTER: 0.0}
    (line,) = ratios({SERVICE: service, "LitServe": dead})
    assert line.endswith(f"{AFTER} - (no answers from LitServe)")
    # one peer alone, or this service alone: nothing to divide
    assert ratios({"BentoML": bento}) == []
    assert ratios({SERVICE: service}) == []


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(180)
def test_this_service_alone_one_line_a_second_through_every_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # PHASES with fewer seconds (2, 1, 2 instead of 5, 6, 10), same loads, a stand-in model
    phases = tuple(
        dataclasses.replace(p, seconds=s) for p, s in zip(PHASES, (2, 1, 2), strict=True)
    )
    digits = load_digits_dataset(seed=0)
    source = locate_model(tmp_path / "missing", "digits-jem", tmp_path, digits, standin=True)
    uploads = [png_bytes(a) for a in digit_images(digits, 64)]

    seconds = probe_service(source.store, source.ref, 1, 1, tmp_path / "logs", uploads, phases)

    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{SERVICE} ({source.ref}, 1 workers), alone:"
    lines = [LINE.fullmatch(line) for line in out[1:]]
    assert all(lines), out
    expected = [(p.label, s + 1) for p in phases for s in range(p.seconds)]
    assert [(m["label"], int(m["second"])) for m in lines if m] == expected
    # the figures returned are the ones printed, one 1-s load per line, every request answered
    assert list(seconds) == [p.label for p in phases]
    results = [r for p in phases for r in seconds[p.label]]
    assert len(results) == len(lines) == 5
    for m, r in zip(lines, results, strict=True):
        assert m is not None
        assert float(m["rate"]) == pytest.approx(r.requests_per_s, abs=0.05)
        assert r.errors == int(m["errors"]) == 0
        assert r.requests > 0
        assert r.requests_per_s > 0
        assert 0 < r.p50_ms <= r.p99_ms
    assert {r.concurrency for r in seconds[BURST]} == {8}
    rates = medians(seconds)
    for label, rate in rates.items():
        per_second = [r.requests_per_s for r in seconds[label]]
        assert min(per_second) <= rate <= max(per_second)
    assert summary(SERVICE, rates).startswith(f"{SERVICE}: {FRESH} median ")
    assert ratios({SERVICE: rates}) == []  # no peer ran
