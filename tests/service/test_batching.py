"""The micro-batcher on a stand-in model: batching, the bounded queue, deadlines, draining."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from service.batching import InFlight, MicroBatcher
from service.errors import DeadlineExceeded, NotReady, Overloaded
from service.metrics import Metrics

pytestmark = pytest.mark.anyio


class Recorder:
    """Doubles its input and records batch sizes; optionally blocks until released."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay_s = delay_s
        self.release = threading.Event()
        self.release.set()

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.release.wait(5)
        time.sleep(self.delay_s)
        self.sizes.append(int(x.shape[0]))
        return {"y": x * 2}


def batcher(fn: Recorder, **kw: object) -> MicroBatcher:
    opts: dict[str, object] = {
        "model": "m",
        "kind": "classify",
        "metrics": Metrics(),
        "max_batch_size": 8,
        "max_wait_s": 0.05,
        "queue_size": 64,
        "timeout_s": 5.0,
    }
    opts.update(kw)
    b = MicroBatcher(fn, **opts)  # type: ignore[arg-type]
    b.start()
    return b


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_concurrent_requests_share_a_batch_and_get_their_own_rows() -> None:
    fn = Recorder()
    b = batcher(fn)
    xs = [torch.full((1, 2), float(i)) for i in range(6)]
    results = await asyncio.gather(*(b.submit(x) for x in xs))
    for x, (out, timing) in zip(xs, results, strict=True):
        torch.testing.assert_close(out["y"], x * 2)
        assert timing.batch_size == 6
        assert timing.queue_s >= 0
        assert timing.compute_s >= 0
    assert fn.sizes == [6]
    await b.close()


async def _closed_loop(b: MicroBatcher, in_flight: InFlight, clients: int, rounds: int) -> float:
    """`clients` each send a request, wait for its answer, send the next (as a load generator
    does); `in_flight` counts them as the HTTP middleware would. Returns the seconds it took."""

    async def client() -> None:
        for _ in range(rounds):
            in_flight.enter()
            try:
                await b.submit(torch.ones(1, 1))
            finally:
                in_flight.leave()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start


async def test_a_batch_holding_every_request_in_progress_stops_waiting() -> None:
    fn = Recorder()
    in_flight = InFlight()
    b = batcher(fn, max_wait_s=0.25, in_flight=in_flight)
    # 4 clients, batches of up to 8: without the count each batch after the first would wait
    # out the whole 0.25 s window for requests that cannot come until it answers
    elapsed = await _closed_loop(b, in_flight, clients=4, rounds=3)
    assert fn.sizes == [4, 4, 4]
    assert elapsed < 0.2, elapsed
    # one more request in progress elsewhere (not yet submitted): the window is waited out
    in_flight.enter()
    elapsed = await _closed_loop(b, in_flight, clients=4, rounds=2)
    assert elapsed >= 0.25, elapsed
    await b.close()


async def test_a_request_that_leaves_without_a_batch_ends_the_wait_at_once() -> None:
    """A request in progress that is answered without the model (or goes away) wakes the
    batcher: its batch now holds everyone, so it closes then, not at the window's end."""
    fn = Recorder()
    in_flight = InFlight()
    # a long window, so that a loaded machine's scheduling delays (tenths of a second) cannot be
    # mistaken for waiting it out
    b = batcher(fn, max_wait_s=3.0, in_flight=in_flight)
    await _closed_loop(b, in_flight, clients=2, rounds=1)  # traffic is concurrent: wait on
    in_flight.enter()  # a request that will not reach the batcher (e.g. a 4xx)

    async def leaves() -> None:
        await asyncio.sleep(0.02)
        in_flight.leave()

    leaving = asyncio.ensure_future(leaves())
    elapsed = await _closed_loop(b, in_flight, clients=1, rounds=1)
    await leaving
    # without the wake-up it waits out the 3 s window
    assert 0.015 <= elapsed < 1.5, elapsed
    assert fn.sizes == [2, 1]
    assert not in_flight.waiting  # the batcher no longer listens once its batch closed
    await b.close()


async def test_batches_never_exceed_max_size_and_big_requests_run_alone() -> None:
    fn = Recorder()
    b = batcher(fn, max_batch_size=4)
    sizes = [3, 2, 1, 6, 1]
    results = await asyncio.gather(*(b.submit(torch.ones(n, 1) * n) for n in sizes))
    assert [r[0]["y"].shape[0] for r in results] == sizes
    assert all(s <= 4 for s in fn.sizes if s != 6)
    assert sum(fn.sizes) == sum(sizes)
    await b.close()


async def test_full_queue_is_refused_with_retry_after() -> None:
    fn = Recorder()
    fn.release.clear()  # the worker blocks inside the first batch
    b = batcher(fn, queue_size=2, max_batch_size=1, retry_after_s=3)
    first = asyncio.ensure_future(b.submit(torch.ones(1, 1)))
    await asyncio.sleep(0.1)  # the worker took it and is blocked
    waiting = [asyncio.ensure_future(b.submit(torch.ones(1, 1))) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await b.submit(torch.ones(1, 1))
    assert info.value.retry_after_s == 3
    fn.release.set()
    await asyncio.gather(first, *waiting)
    await b.close()


async def test_expired_requests_are_dropped_before_compute() -> None:
    fn = Recorder()
    fn.release.clear()
    b = batcher(fn, timeout_s=0.2, max_batch_size=1)
    first = asyncio.ensure_future(b.submit(torch.ones(1, 1)))
    await asyncio.sleep(0.05)
    late = asyncio.ensure_future(b.submit(torch.ones(1, 1)))
    with pytest.raises(DeadlineExceeded, match="JEM_REQUEST_TIMEOUT_S"):
        await late
    fn.release.set()
    with pytest.raises(DeadlineExceeded):
        await first  # it too outlived its deadline while blocked
    await asyncio.sleep(0.1)
    assert fn.sizes == [1]  # `late` never reached the model
    await b.close()


async def test_one_deadline_timer_serves_every_request() -> None:
    """The batcher's one deadline timer: answered requests are forgotten, and the timer is set
    again for requests that arrive after a deadline passed."""
    fn = Recorder()
    b = batcher(fn, timeout_s=0.3)
    xs = [torch.full((1, 2), float(i)) for i in range(20)]
    results = await asyncio.gather(*(b.submit(x) for x in xs))
    assert [float(out["y"][0, 0]) for out, _ in results] == [2.0 * i for i in range(20)]
    assert len(b._pending) == 0  # answered: not held until the timer comes
    for _ in range(2):  # each time a request outlives its deadline while the model is stuck
        fn.release.clear()
        stuck = asyncio.ensure_future(b.submit(torch.ones(1, 2)))
        with pytest.raises(DeadlineExceeded, match=r"not finished within 0\.3 s"):
            await asyncio.wait_for(stuck, 2)
        fn.release.set()
        await asyncio.sleep(0.05)
    out, _ = await b.submit(torch.ones(1, 2))
    assert float(out["y"][0, 0]) == 2.0
    await b.close()


async def test_close_drains_queued_work_then_refuses() -> None:
    fn = Recorder(delay_s=0.02)
    b = batcher(fn, max_batch_size=1)
    pending = [asyncio.ensure_future(b.submit(torch.ones(1, 1))) for _ in range(5)]
    await asyncio.sleep(0)
    await b.close()
    assert all(p.done() and p.exception() is None for p in pending)
    with pytest.raises(NotReady, match="shutting down"):
        await b.submit(torch.ones(1, 1))


async def test_model_errors_reach_the_caller_and_the_worker_survives() -> None:
    calls = {"n": 0}

    def flaky(x: torch.Tensor) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return {"y": x}

    b = batcher(flaky)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="boom"):
        await b.submit(torch.ones(1, 1))
    out, _ = await b.submit(torch.ones(1, 1))
    assert out["y"].shape == (1, 1)
    await b.close()
