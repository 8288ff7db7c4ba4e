"""A bounded pool for SGLD generation, apart from the classification threads.

Generation costs hundreds of forward and backward passes: it gets its own threads
(`JEM_GENERATION_CONCURRENCY`) and a few waiting slots (`JEM_GENERATION_QUEUE_SIZE`); beyond
those, requests are refused at once with 429 and `Retry-After` instead of piling up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from service.errors import GenerationBusy, NotReady

__all__ = ["GenerationPool"]

T = TypeVar("T")


class GenerationPool:
    def __init__(self, *, concurrency: int, queue_size: int, retry_after_s: int = 5) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + queue_size
        self.retry_after_s = retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sgld")
        self._admitted = 0
        self._closed = False

    @property
    def admitted(self) -> int:
        """Generations running or waiting for a thread."""
        return self._admitted

    async def run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise NotReady(
                "the service is shutting down; retry on another replica", retry_after_s=1
            )
        if self._admitted >= self.capacity:
            raise GenerationBusy(
                f"{self._admitted} generations are running or waiting (JEM_GENERATION_CONCURRENCY "
                "+ JEM_GENERATION_QUEUE_SIZE); retry after the Retry-After delay",
                retry_after_s=self.retry_after_s,
            )
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        finally:
            self._admitted -= 1

    def close(self) -> None:
        """Refuse new generations; running ones stop at their time budget."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
