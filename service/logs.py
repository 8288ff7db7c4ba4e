"""JSON-lines logging with the current request id on every record."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import threading
import time
from typing import Any

from service.turns import EndOfTurn

__all__ = [
    "AccessLog",
    "JsonFormatter",
    "TurnStreamHandler",
    "configure_logging",
    "log_config",
    "request_id_var",
]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured duplicate of msg
}


# One encoder for every line: `json.dumps(..., default=str)` builds a new one per call.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ms), level, logger, message, the request id, and
    every `extra=` field."""

    # (a whole second, how it is spelt): formatted once per second rather than per line; one
    # tuple, so that a thread never reads one second's number with another's spelling
    _stamp: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second, stamp = self._stamp
        if int(record.created) != second:
            second = int(record.created)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._stamp = (second, stamp)
        entry: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)


def _task_name() -> str | None:
    """The current asyncio task's name, as `LogRecord.__init__` records it (Python 3.12+)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None
    return task.get_name() if task is not None else None


class AccessLog:
    """`logger.info(message, extra=fields)` from one call site, at a fraction of its cost.

    Every access line is logged from the same line of the request middleware, by the same
    thread of the same process: where `Logger.info` looks up its caller (a walk up the stack)
    and `LogRecord.__init__` its thread, process and source file for every line (4-5 us of a
    ~20 us line, py-spy: the access line was ~5% of a single-image predict), `log` copies those
    attributes from a record made the standard way on the first line (per process and thread),
    and sets the time and `fields`. The handlers, filters and levels are the logger's own, and
    the record holds the same attributes; with a custom log record factory installed
    (`logging.setLogRecordFactory`), every line is made by it (`Logger.info`).
    """

    def __init__(self, logger: logging.Logger, message: str) -> None:
        self.logger = logger
        self.message = message
        self._template: tuple[tuple[int, int], dict[str, Any]] = ((-1, -1), {})

    def log(self, fields: dict[str, Any]) -> None:
        """Log `message` at INFO with `fields` as the record's attributes (`extra=`)."""
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        if logging.getLogRecordFactory() is not logging.LogRecord:
            logger.info(self.message, extra=fields, stacklevel=2)
            return
        where = (os.getpid(), threading.get_ident())
        made_for, template = self._template
        if made_for != where:
            pathname, lineno, func, _ = logger.findCaller(stacklevel=2)
            standard = logger.makeRecord(
                logger.name, logging.INFO, pathname, lineno, self.message, (), None, func
            )
            template = dict(standard.__dict__)
            self._template = (where, template)
        record = logging.LogRecord.__new__(logging.LogRecord)
        attributes = record.__dict__
        attributes.update(template)
        now = time.time()  # as LogRecord.__init__ sets the three
        attributes["created"] = now
        attributes["msecs"] = int((now - int(now)) * 1000) + 0.0
        # ms since logging was imported: the template's, moved on by the time since it was made
        attributes["relativeCreated"] = (
            template["relativeCreated"] + (now - template["created"]) * 1000
        )
        if attributes.get("taskName") is not None:  # Python 3.12+: the asyncio task, per record
            attributes["taskName"] = _task_name()
        attributes.update(fields)
        logger.handle(record)


class TurnStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """`logging.StreamHandler` that writes the lines an event loop's turn logs in one write.

    A single-image predict logs one access line, and the stream handler wrote and flushed each
    (a system call: 2.6-3.3 us a line to a file or a pipe, microbenchmark); the requests of one
    batch are answered in one turn. Lines logged on the thread of a running event loop are
    formatted at once and held; a callback the loop runs after the callbacks already waiting
    (as `service.tally`'s) writes them in order and flushes. A line logged where no loop runs
    (startup, another thread) writes the held lines first, then itself, so the order of lines
    is the order they were logged in. `flush()` (also `logging.shutdown` at exit) writes what
    is held; a process killed mid-turn loses that turn's lines (well under a millisecond of
    them).
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []
        self._last: logging.LogRecord | None = None  # for handleError, if the write fails
        self._turn = EndOfTurn(self._write_held)

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._held.append(line)
        self._last = record
        if not self._turn.request():  # no event loop in this thread: now
            self._write_held()

    def _write_held(self) -> None:
        """Write and flush the held lines; a failure goes to `handleError`, as in `emit`."""
        with self.lock:  # type: ignore[union-attr]  # (an RLock: emit holds it too)
            self._turn.done()
            held, self._held = self._held, []
            if not held:
                return
            try:
                self.stream.write("".join(held))
                if hasattr(self.stream, "flush"):
                    self.stream.flush()
            except Exception:
                self.handleError(self._last)  # type: ignore[arg-type]  # set with the lines

    def flush(self) -> None:
        """The held lines, then the stream's own flush (as `StreamHandler.flush`)."""
        self._write_held()
        super().flush()


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the service and uvicorn: JSON lines on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "service.logs.TurnStreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "service": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def configure_logging(level: str = "INFO") -> None:
    import logging.config

    logging.config.dictConfig(log_config(level))
