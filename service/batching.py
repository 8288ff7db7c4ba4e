"""Micro-batching: concurrent requests for one model are gathered into one forward pass.

A bounded asyncio queue per (model, kind); one worker task takes the first waiting request, then
gathers more until the batch holds `max_batch_size` images or `max_wait_s` has passed, and runs
the model in its own thread so the event loop keeps serving. The wait is adaptive: it applies only
while traffic is concurrent (the previous batch gathered more than one request), so a lone
client never waits for company that is not coming; and it ends as soon as the batch holds every
request the server has in progress (`InFlight`), so eight clients do not wait out the whole
window for a ninth; a request that leaves without joining (the previous batch's, answered) ends
the wait too. Requests carry a deadline: expired ones are dropped before compute.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from service.errors import DeadlineExceeded, NotReady, Overloaded
from service.metrics import Metrics

__all__ = ["BatchFn", "BatchTiming", "InFlight", "MicroBatcher"]

BatchFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]
StackFn = Callable[[list[torch.Tensor]], torch.Tensor]


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(parts) if len(parts) > 1 else parts[0]


@dataclass
class InFlight:
    """Requests in progress in this process that may reach a batcher (HTTP requests other than
    probes, gRPC inference calls): counted by `ConcurrencyLimitMiddleware` and the gRPC server
    (`enter` / `leave`).

    A request that leaves (answered, refused before the model, gone) wakes the batchers waiting
    for company (`waiting`), so that one whose batch now holds every request in progress closes
    it at once instead of at the next arrival or the end of its window."""

    value: int = 0
    waiting: set[asyncio.Event] = field(default_factory=set)

    def enter(self) -> None:
        self.value += 1

    def leave(self) -> None:
        self.value -= 1
        for event in self.waiting:
            event.set()


@dataclass(frozen=True)
class BatchTiming:
    queue_s: float
    compute_s: float
    batch_size: int


@dataclass(eq=False)
class _Item:
    x: torch.Tensor
    future: asyncio.Future[tuple[dict[str, torch.Tensor], BatchTiming]]
    enqueued: float
    deadline: float
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = int(self.x.shape[0])


class MicroBatcher:
    def __init__(
        self,
        fn: BatchFn,
        *,
        model: str,
        kind: str,
        metrics: Metrics,
        max_batch_size: int,
        max_wait_s: float,
        queue_size: int,
        timeout_s: float,
        retry_after_s: int = 1,
        stack: StackFn = _cat,
        in_flight: InFlight | None = None,
    ) -> None:
        self._fn = fn
        self._stack = stack  # e.g. into pinned memory for a CUDA device (service.device)
        self._in_flight = in_flight
        self.model = model
        self.kind = kind
        self._metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self._arrived = asyncio.Event()
        self._carry: _Item | None = None
        self._last_batch_requests = 1
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{model}-{kind}")
        self._closed = False
        self._worker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        # requests not yet answered, in arrival (= deadline) order, and the one deadline timer
        self._pending: collections.deque[_Item] = collections.deque()
        self._deadline_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    @property
    def depth(self) -> int:
        return self._queue.qsize() + (self._carry is not None)

    async def submit(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], BatchTiming]:
        """Run `fn` on `x` (B, ...) as part of a batch; returns this request's slice of outputs."""
        if self._closed:
            raise NotReady(
                "the service is shutting down; retry on another replica", retry_after_s=1
            )
        loop = asyncio.get_running_loop()
        item = _Item(x, loop.create_future(), time.perf_counter(), loop.time() + self.timeout_s)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._metrics.queue_rejections.labels(self.model).inc()
            raise Overloaded(
                f"model {self.model!r} has {self._queue.maxsize} requests waiting "
                "(JEM_QUEUE_SIZE); retry after the Retry-After delay",
                retry_after_s=self.retry_after_s,
            ) from None
        self._idle.clear()
        m = self._metrics
        m.tally.set(m.child(m.queue_depth, self.model), self.depth)
        self._arrived.set()
        self._pending.append(item)
        if self._deadline_timer is None:
            self._deadline_timer = loop.call_at(item.deadline, self._expire)
        try:
            # the future itself is awaited: failed at its deadline (`_expire`), cancelled when
            # the client goes away; the worker skips finished items (no shield, no wait_for
            # task and no timer per request)
            return await item.future
        finally:
            if not item.future.done():
                item.future.cancel()

    def _expire(self) -> None:
        """Fail the requests past their deadline, then wait for the next one's.

        One timer per batcher rather than one per request (asyncio.timeout: ~4.5 us a request
        under uvloop): every request gets the same `timeout_s`, so `_pending`, in arrival
        order, is in deadline order too."""
        self._deadline_timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        pending = self._pending
        while pending and (pending[0].future.done() or pending[0].deadline <= now):
            item = pending.popleft()
            if not item.future.done():
                item.future.set_exception(
                    DeadlineExceeded(
                        f"request not finished within {self.timeout_s:g} s "
                        "(JEM_REQUEST_TIMEOUT_S): the service is overloaded; retry later or "
                        "send fewer images"
                    )
                )
        if pending:
            self._deadline_timer = loop.call_at(pending[0].deadline, self._expire)

    def _forget_finished(self) -> None:
        """Drop the finished requests at the front of `_pending` (it stays short)."""
        pending = self._pending
        while pending and pending[0].future.done():
            pending.popleft()

    async def _next(self) -> _Item:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        return await self._queue.get()

    async def _gather(self) -> list[_Item]:
        loop = asyncio.get_running_loop()
        items = [await self._next()]
        total = items[0].size
        wait_s = self.max_wait_s if self._last_batch_requests > 1 else 0.0
        until = loop.time() + wait_s
        while total < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = until - loop.time()
                if remaining <= 0 or self._everyone_here(len(items)):
                    break
                self._arrived.clear()
                waiting = self._in_flight.waiting if self._in_flight is not None else None
                if waiting is not None:
                    waiting.add(self._arrived)  # a request leaving may make everyone here
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
                finally:
                    if waiting is not None:
                        waiting.discard(self._arrived)
                continue
            if total + item.size > self.max_batch_size:
                self._carry = item  # starts the next batch
                break
            items.append(item)
            total += item.size
        self._last_batch_requests = len(items)
        return items

    def _everyone_here(self, requests: int) -> bool:
        """Whether this batch holds every request in progress: then only a request not yet sent
        could join it, and waiting for one only delays these."""
        return self._in_flight is not None and self._in_flight.value <= requests

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather()
            m = self._metrics
            m.tally.set(m.child(m.queue_depth, self.model), self.depth)
            now = loop.time()
            live = []
            for item in items:
                if item.future.done():
                    continue  # the client gave up
                if item.deadline <= now:
                    item.future.set_exception(
                        DeadlineExceeded(
                            f"request waited {self.timeout_s:g} s (JEM_REQUEST_TIMEOUT_S) "
                            "in the queue; the service is overloaded, retry later"
                        )
                    )
                    continue
                live.append(item)
            if live:
                await self._compute(live)
            self._forget_finished()
            if self.depth == 0:
                self._idle.set()

    async def _compute(self, items: list[_Item]) -> None:
        start = time.perf_counter()
        x = self._stack([item.x for item in items])
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._fn, x)
        except Exception as exc:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        compute_s = time.perf_counter() - start
        size = int(x.shape[0])
        queue_waits = [start - item.enqueued for item in items]
        m = self._metrics
        m.tally.observe(m.child(m.compute, self.model, self.kind), compute_s)
        m.tally.observe(m.child(m.batch_size, self.model), size)
        m.tally.observe_all(m.child(m.queue_wait, self.model), queue_waits)
        # every request's slice of every output in one `split` per output, rather than one
        # indexing call per request and output (~2 us each, on the event loop)
        parts = {k: v.split([item.size for item in items]) for k, v in outputs.items()}
        for i, (item, queue_s) in enumerate(zip(items, queue_waits, strict=True)):
            if not item.future.done():
                part = {k: views[i] for k, views in parts.items()}
                item.future.set_result((part, BatchTiming(queue_s, compute_s, size)))

    async def close(self, timeout_s: float = 30.0) -> None:
        """Refuse new requests, finish the queued ones (up to `timeout_s`), stop the worker."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True, cancel_futures=True)
