"""Work deferred to the end of the current event-loop turn, scheduled once however often asked.

`service.tally` (metric updates) and `service.logs.TurnStreamHandler` (log lines) hold what a
turn produces and write it in one callback the loop runs after the callbacks already waiting,
so the requests of one batch, which finish in one turn, share one write.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

__all__ = ["EndOfTurn"]


class EndOfTurn:
    """Schedules ``callback`` once per turn of the event loop running in the calling thread.

    ``callback`` must call `done` when it runs (and so must any direct call of it that writes
    what is held), so that the next request schedules it again.
    """

    __slots__ = ("_callback", "_on", "_thread")

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback = callback
        self._on: asyncio.AbstractEventLoop | None = None  # where the callback is scheduled
        self._thread = 0  # the thread that scheduled it (the loop's)

    def request(self) -> bool:
        """Schedule the callback at the end of this thread's running loop's turn, unless it is
        already; False (nothing scheduled) where no event loop runs in this thread: the caller
        does the work now.

        A callback already scheduled on a loop running in this thread is recognised without
        asking asyncio for the running loop (Python 3.11's `get_running_loop` makes a getpid
        system call each time; a single-image request asks about a dozen times)."""
        scheduled = self._on
        if (
            scheduled is not None
            and self._thread == threading.get_ident()
            and scheduled.is_running()
        ):
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if scheduled is not loop:  # not yet scheduled, or on a loop no longer running
            loop.call_soon(self._callback)
            self._on = loop
            self._thread = threading.get_ident()
        return True

    def done(self) -> None:
        """What was held is written: the next `request` schedules the callback again."""
        self._on = None
