"""The JSON access/log lines (service/logs.py): the cached timestamp and the shared encoder write
what a fresh `time.strftime` and `json.dumps(..., default=str)` write, line for line; the access
line's records (`AccessLog`) hold what `Logger.info` would have made."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.logs import AccessLog, JsonFormatter, request_id_var


def _reference(record: logging.LogRecord, request_id: str | None) -> str:
    entry: dict[str, object] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname,
        "logger": record.name,
        "msg": record.getMessage(),
    }
    if request_id is not None:
        entry["request_id"] = request_id
    entry.update(status=200, latency_ms=1.5, where=str(Path("/x")))
    return json.dumps(entry, default=str)


def test_lines_match_a_fresh_format_across_seconds() -> None:
    formatter = JsonFormatter()
    token = request_id_var.set("abc")
    try:
        # within one second, the next, back again, a jump, and the epoch
        for created in (1.7e9 + 0.001, 1.7e9 + 0.999, 1.7e9 + 1, 1.7e9 + 0.5, 1.8e9 + 0.456, 0.25):
            fields = {"status": 200, "latency_ms": 1.5, "where": Path("/x")}  # str() by default
            record = logging.makeLogRecord(
                {"name": "service.access", "levelno": logging.INFO, "levelname": "INFO"}
                | {"msg": "request %s", "args": ("x",)}
                | fields
            )
            record.created = created
            record.msecs = (created - int(created)) * 1000
            assert formatter.format(record) == _reference(record, "abc")
    finally:
        request_id_var.reset(token)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, _Records]]:
    logger = logging.getLogger("tests.access")
    handler = _Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler
    logger.removeHandler(handler)


def _both(access: AccessLog, fields: dict[str, Any], fast: bool) -> None:
    # one line for both, so that the caller's line number is the same
    access.log(fields) if fast else access.logger.info("request", extra=fields)


_TIMES = ("created", "msecs", "relativeCreated")


def test_access_records_hold_what_logger_info_makes(
    logger: tuple[logging.Logger, _Records],
) -> None:
    log, handler = logger
    access = AccessLog(log, "request")
    for i in range(3):  # the first record makes the template, the next ones copy it
        fields = {"method": "POST", "path": f"/p{i}", "status": 200 + i, "model": None}
        _both(access, fields, fast=True)
        _both(access, fields, fast=False)
    for fast, plain in zip(handler.records[::2], handler.records[1::2], strict=True):
        assert type(fast) is logging.LogRecord
        same = {k: v for k, v in fast.__dict__.items() if k not in _TIMES}
        assert same == {k: v for k, v in plain.__dict__.items() if k not in _TIMES}
        assert fast.funcName == "_both"
        assert fast.filename == "test_logs.py"
        assert abs(fast.created - plain.created) < 1.0
        assert fast.msecs == int((fast.created - int(fast.created)) * 1000)
        assert abs(fast.relativeCreated - plain.relativeCreated) < 1000.0
    assert handler.records[0].created <= handler.records[2].created


def test_access_records_follow_the_thread_the_level_and_a_record_factory(
    logger: tuple[logging.Logger, _Records],
) -> None:
    log, handler = logger
    access = AccessLog(log, "request")
    access.log({"status": 1})
    thread = threading.Thread(target=access.log, args=({"status": 2},), name="other")
    thread.start()
    thread.join()
    assert [r.threadName for r in handler.records] == [threading.current_thread().name, "other"]
    log.setLevel(logging.WARNING)
    access.log({"status": 3})
    assert len(handler.records) == 2
    log.setLevel(logging.INFO)

    class Custom(logging.LogRecord):
        pass

    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(Custom)
    try:
        access.log({"status": 4})
    finally:
        logging.setLogRecordFactory(factory)
    assert type(handler.records[-1]) is Custom
    assert handler.records[-1].__dict__["status"] == 4
