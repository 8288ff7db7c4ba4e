"""Forked workers take turns at accepting connections, so that keep-alive connections spread
evenly over them.

Every worker listens on the one socket the parent bound, and the kernel hands a new connection
to whichever worker's accept comes first: a worker that wakes up to a burst of connections
accepts all of them. With keep-alive clients those stay where they landed: counted with psutil
1.2 s into a load (docs/benchmarks-peers.md, "Connections per worker"), 8 connections split 0/8,
2/6 and 4/4, 64 split 14/50, so one core served most requests while the other idled, and the
throughput and p99 of a row depended on the draw. `SO_REUSEPORT` was tried before and does not
balance either (the kernel hashes the addresses).

Here each worker publishes its open connections (uvicorn's `server_state.connections`, plus
sockets accepted but not yet connected) on a shared board (`ConnectionBoard`, shared memory
made by the parent before it forks), and accepts, one connection at a time, only while it holds
no more than the least loaded other worker. A worker whose heartbeat on the board is older than
`STALE_S` (hung, or dead and not yet replaced) is left out, so the others never wait on it; a
replacement worker takes over the dead one's slot.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import RawArray
from typing import Any

import uvicorn

from service.server.workers import process_alive

__all__ = ["BalancedServer", "ConnectionBoard"]

logger = logging.getLogger("service.server")

STALE_S = 1.0  # a worker that has not updated its slot for this long is left out
TICK_S = 0.01  # how often a worker publishes its count and looks at the others'


class ConnectionBoard:
    """Per worker (by slot): pid, open connections, last update (`time.monotonic`, one clock
    for every process). Made before the workers fork; `slots` bounds the workers."""

    def __init__(self, slots: int = 64) -> None:
        context = multiprocessing.get_context("fork")
        self._lock = context.Lock()
        self._pid: Any = RawArray("q", slots)
        self._count: Any = RawArray("q", slots)
        self._beat: Any = RawArray("d", slots)
        self.slots = slots

    def claim(self) -> int | None:
        """A free slot (never used, or its worker's process is gone) for this process."""
        with self._lock:
            for slot in range(self.slots):
                pid = self._pid[slot]
                if pid == 0 or not process_alive(pid):
                    self._pid[slot] = os.getpid()
                    self._count[slot] = 0
                    self._beat[slot] = time.monotonic()
                    return slot
        return None

    def release(self, slot: int) -> None:
        with self._lock:
            self._pid[slot] = 0
            self._count[slot] = 0

    def publish(self, slot: int, count: int) -> None:
        self._count[slot] = count
        self._beat[slot] = time.monotonic()

    def least_elsewhere(self, slot: int) -> int | None:
        """The fewest connections any other live worker holds; None when there is none."""
        fresh = time.monotonic() - STALE_S
        counts = [
            self._count[other]
            for other in range(self.slots)
            if other != slot and self._pid[other] != 0 and self._beat[other] >= fresh
        ]
        return min(counts) if counts else None


class _Connections(set[Any]):
    """uvicorn's set of open connections (`server_state.connections`), which also tells
    `closed` when a connection leaves it (a protocol's `connection_lost` discards itself), so
    the worker publishes its lower count at once: a count left high until the next tick, on a
    worker the CPU is slow to come back to, let another worker take more than its turn."""

    closed: Callable[[], None] | None = None  # set once the worker takes turns

    def discard(self, item: Any) -> None:
        super().discard(item)
        if self.closed is not None:
            self.closed()


class _TakingTurns:
    """Accepts on `sock` while this worker is among the least loaded; uvicorn's `Server`
    closes it as it closes an `asyncio.Server` when shutting down."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Any,
        connections: set[Any],
        board: ConnectionBoard,
        slot: int,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._sock.setblocking(False)
        self._factory = protocol_factory
        self._connections = connections
        self._board = board
        self._slot = slot
        self._pending = 0  # accepted, not yet handed to a protocol
        self._accepting = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        if isinstance(connections, _Connections):
            connections.closed = self._decide
        self._tick()

    def _open(self) -> int:
        return len(self._connections) + self._pending

    def _decide(self) -> None:
        if self._closed:
            return
        mine = self._open()
        self._board.publish(self._slot, mine)
        least = self._board.least_elsewhere(self._slot)
        fair = least is None or mine <= least
        if fair and not self._accepting:
            self._loop.add_reader(self._sock.fileno(), self._accept)
        elif not fair and self._accepting:
            self._loop.remove_reader(self._sock.fileno())
        self._accepting = fair

    def _tick(self) -> None:
        if not self._closed:
            self._decide()
            self._timer = self._loop.call_later(TICK_S, self._tick)

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:  # e.g. out of file descriptors: asyncio logs and carries on too
            logger.error("accept failed: %s", exc)
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pending += 1
        self._loop.create_task(self._connect(conn))
        self._decide()

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except Exception:
            logger.exception("could not serve an accepted connection")
            conn.close()
        finally:
            self._pending -= 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._accepting:
            self._loop.remove_reader(self._sock.fileno())
            self._accepting = False
        self._sock.close()
        self._board.release(self._slot)

    async def wait_closed(self) -> None:
        return None


class BalancedServer(uvicorn.Server):
    """uvicorn's `Server` whose worker accepts in turns with the others on `board` (set by
    `python -m service` before forking); as uvicorn's own where no slot is left, for TLS, or
    without sockets from a parent."""

    board: ConnectionBoard | None = None
    _supervisor: int | None = None  # in a forked worker: the supervisor's pid

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        board = self.board
        if board is not None:  # forked by the supervisor, which is our parent now
            self._supervisor = os.getppid()
        if sockets is None or board is None or self.config.ssl is not None:
            await super().startup(sockets)
            return
        own = [sock.dup() for sock in sockets]  # uvicorn's servers close theirs below
        # before any protocol is made: each keeps the set it was given
        self.server_state.connections = _Connections()
        await super().startup(sockets)
        slot = board.claim() if self.started else None
        if slot is None:
            for sock in own:
                sock.close()
            return
        for server in self.servers:
            server.close()  # stop uvicorn's accepting: connections it took stay open
        config = self.config
        factory = functools.partial(
            config.http_protocol_class,  # type: ignore[call-arg]
            config=config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        connections = self.server_state.connections
        self.servers = [
            _TakingTurns(sock, factory, connections, board, slot)  # type: ignore[misc]
            for sock in own
        ]

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's tick (every 0.1 s), and once a second: is the supervisor still there? A
        worker whose supervisor was killed (SIGKILL, the OOM killer) would otherwise serve on,
        unsupervised, until someone finds it; it drains and stops instead."""
        supervisor = self._supervisor
        if counter % 10 == 0 and supervisor is not None and os.getppid() != supervisor:
            logger.warning("the supervisor (pid %d) is gone: this worker stops", supervisor)
            return True
        return await super().on_tick(counter)
