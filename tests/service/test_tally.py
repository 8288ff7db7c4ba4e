"""Metric updates held for the end of the event-loop turn (service/tally.py) reach the metrics
as direct updates would: counter sums, every histogram value, a gauge's last setting; written
once the turn's callbacks have run, at once outside a loop, and before /metrics reads them."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from service.metrics import Metrics
from tests.service.conftest import Digits, make_settings, png_bytes, serve

pytestmark = pytest.mark.anyio

VALUES = [0.0004, 0.003, 0.003, 0.7, 31.0, math.inf, -1.0]


def _exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def _updates(metrics: Metrics, direct: bool) -> None:
    """The same updates, made directly or through the tally."""
    m, tally = metrics, metrics.tally
    counter = m.child(m.requests, "m", "predict", "200")
    histogram = m.child(m.request_duration, "m", "predict")
    energies = m.child(m.energy, "m")
    gauge = m.child(m.queue_depth, "m")
    if direct:
        for value in VALUES:
            counter.inc()
            histogram.observe(value)
        counter.inc(2.5)
        for value in VALUES[:3]:
            energies.observe(value)
        for depth in (3, 0, 5):
            gauge.set(depth)
    else:
        for value in VALUES:
            tally.inc(counter)
            tally.observe(histogram, value)
        tally.inc(counter, 2.5)
        tally.observe_all(energies, VALUES[:3])
        for depth in (3, 0, 5):
            tally.set(gauge, depth)


async def test_one_turn_is_written_as_the_direct_updates() -> None:
    direct, held = Metrics(), Metrics()
    _updates(direct, direct=True)
    _updates(held, direct=False)
    written = [s.value for family in held.registry.collect() for s in family.samples]
    assert written == [0.0] * len(written)  # nothing written within the turn
    await asyncio.sleep(0)  # the turn ends: the callback runs
    assert _exposition(held) == _exposition(direct)


async def test_exposition_reads_the_turns_updates_first() -> None:
    direct, held = Metrics(), Metrics()
    _updates(direct, direct=True)
    _updates(held, direct=False)
    assert held.exposition() == direct.exposition()
    await asyncio.sleep(0)  # the scheduled callback then finds nothing more to write
    assert held.exposition() == direct.exposition()


def test_outside_an_event_loop_updates_are_written_at_once() -> None:
    direct, held = Metrics(), Metrics()
    _updates(direct, direct=True)
    _updates(held, direct=False)
    assert _exposition(held) == _exposition(direct)


async def test_requests_are_counted_by_the_time_metrics_answers(
    store_root: Path, digits: Digits
) -> None:
    """/metrics right after requests (same event loop, no wait) counts every one of them."""
    async with serve(make_settings(store_root)) as client:
        data = png_bytes(digits.test_u8[0])
        files = [("files", ("d.png", data, "image/png"))]
        answers = await asyncio.gather(
            *(client.post("/v1/models/served/predict", files=files) for _ in range(5))
        )
        assert [a.status_code for a in answers] == [200] * 5
        text = (await client.get("/metrics")).text
    line = 'jem_requests_total{endpoint="predict",model="served",status="200"} 5.0'
    assert line in text.splitlines()
    assert 'jem_images_total{model="served"} 5.0' in text.splitlines()


def test_a_flush_left_on_a_closed_loop_does_not_hold_back_later_updates() -> None:
    direct, held = Metrics(), Metrics()
    _updates(direct, direct=True)
    _updates(direct, direct=True)

    async def update() -> None:
        _updates(held, direct=False)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(update())  # stops before the scheduled flush runs
    loop.close()

    async def update_then_wait() -> None:
        _updates(held, direct=False)
        await asyncio.sleep(0)

    asyncio.run(update_then_wait())
    assert _exposition(held) == _exposition(direct)


async def test_a_turn_asks_for_the_running_loop_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a flush is scheduled on the loop running in this thread, further updates in the turn
    do not ask asyncio for the running loop again (Python 3.11: a getpid system call each);
    the next turn's first update does, and everything is written as direct updates would be."""
    import service.turns

    calls = 0
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        nonlocal calls
        calls += 1
        return real()

    monkeypatch.setattr(service.turns.asyncio, "get_running_loop", counted)
    direct, held = Metrics(), Metrics()
    for _turn in range(2):
        _updates(direct, direct=True)
        calls = 0
        _updates(held, direct=False)  # 19 updates
        assert calls == 1
        await asyncio.sleep(0)  # the turn ends
        assert _exposition(held) == _exposition(direct)
