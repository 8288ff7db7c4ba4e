"""Where a benchmark run's results go: `<stem>.json` (every number) and `<stem>.md` (the tables)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from bench.servers import REPO

__all__ = ["write_results"]


def write_results(
    out: Path | None, quick: bool, stem: str, results: dict[str, Any], table: str
) -> Path:
    """Write `stem`.json and `stem`.md into `out` (default bench/results; a smoke run, `quick`:
    a new temporary directory, so it never replaces a committed result), print the table, and
    return the directory."""
    directory = out or (
        Path(tempfile.mkdtemp(prefix=f"jem-{stem}-")) if quick else REPO / "bench/results"
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (directory / f"{stem}.md").write_text(table, encoding="utf-8")
    print()
    print(table)
    print(f"wrote {directory / stem}.json and {directory / stem}.md")
    return directory
