"""`TurnStreamHandler` (service/logs.py): the lines an event loop's turn logs reach the stream in
one write at the end of the turn, in the order they were logged; at once where no loop runs;
held lines first when a thread without a loop logs; all of them on `flush()`."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import pytest

from service.logs import TurnStreamHandler


class _Stream:
    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, data: str) -> None:
        self.writes.append(data)

    def flush(self) -> None:
        self.flushes += 1

    @property
    def lines(self) -> list[str]:
        return "".join(self.writes).splitlines()


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, _Stream]]:
    stream = _Stream()
    handler = TurnStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"test-turns-{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_a_turns_lines_are_one_write_at_its_end(logged: tuple[logging.Logger, _Stream]) -> None:
    logger, stream = logged

    async def turn() -> None:
        for i in range(3):
            logger.info("line %d", i)
        assert stream.writes == []  # held for the end of the turn
        await asyncio.sleep(0)  # the turn ends: the callback runs
        assert stream.writes == ["line 0\nline 1\nline 2\n"]
        logger.info("next turn")
        await asyncio.sleep(0)

    asyncio.run(turn())
    assert stream.lines == ["line 0", "line 1", "line 2", "next turn"]
    assert len(stream.writes) == 2


def test_outside_an_event_loop_a_line_is_written_at_once(
    logged: tuple[logging.Logger, _Stream],
) -> None:
    logger, stream = logged
    logger.info("at once")
    assert stream.writes == ["at once\n"]
    assert stream.flushes == 1


def test_a_thread_without_a_loop_writes_the_held_lines_first(
    logged: tuple[logging.Logger, _Stream],
) -> None:
    logger, stream = logged

    async def turn() -> None:
        logger.info("from the loop")
        worker = threading.Thread(target=logger.info, args=("from a thread",))
        worker.start()
        worker.join()  # within the loop's turn
        assert stream.lines == ["from the loop", "from a thread"]
        await asyncio.sleep(0)

    asyncio.run(turn())
    assert stream.lines == ["from the loop", "from a thread"]


def test_flush_writes_what_is_held_and_a_closed_loop_holds_nothing_back(
    logged: tuple[logging.Logger, _Stream],
) -> None:
    """A loop that stops before its scheduled write (one shut down mid-turn): `flush()` (as
    `logging.shutdown` at exit) writes its lines, and a later loop's lines are written at the
    end of its own turn, after them."""
    logger, stream = logged
    loop = asyncio.new_event_loop()
    loop.call_soon(logger.info, "stopped mid-turn")
    loop.call_soon(loop.stop)  # the loop ends with this turn, before the scheduled write
    loop.run_forever()
    loop.close()
    assert stream.writes == []

    async def log_then_wait() -> None:
        logger.info("later")
        await asyncio.sleep(0)

    asyncio.run(log_then_wait())
    assert stream.lines == ["stopped mid-turn", "later"]
    loop = asyncio.new_event_loop()
    loop.call_soon(logger.info, "held at exit")
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()
    assert stream.lines == ["stopped mid-turn", "later"]
    for handler in logger.handlers:
        handler.flush()
    assert stream.lines == ["stopped mid-turn", "later", "held at exit"]
