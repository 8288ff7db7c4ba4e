"""One answer in a form two apps' answers can be compared by (tests of the lean route and the
hot path, which must answer exactly as FastAPI's own handling does)."""

from __future__ import annotations

import json
from typing import Any

import httpx


def comparable(
    response: httpx.Response, *, ignore_headers: tuple[str, ...] = ()
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body without its ``timing``, or the text; headers without
    ``content-length`` (it follows the timing) and ``ignore_headers``)."""
    skip = {"content-length", *ignore_headers}
    headers = {k: v for k, v in response.headers.items() if k not in skip}
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = response.text
    if isinstance(body, dict):
        body.pop("timing", None)
    return response.status_code, body, headers
