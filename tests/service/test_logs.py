"""The JSON access/log lines (service/logs.py): the cached timestamp and the shared encoder write
what a fresh `time.strftime` and `json.dumps(..., default=str)` write, line for line."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from service.logs import JsonFormatter, request_id_var


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
