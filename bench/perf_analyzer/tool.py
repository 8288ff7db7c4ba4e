"""`python -m bench.perf_analyzer.tool ARGS...`: run the pinned perf_analyzer with ARGS.

Installs it first when its venv lacks it (bench/perf_analyzer/requirements.txt), then replaces
this process with the binary, run with the CUDA runtime's library directory on LD_LIBRARY_PATH
(the binary links libcudart.so.12 even where there is no GPU), so `tool --help` or
`tool -m digits-jem -u 127.0.0.1:8000 --input-data data.json` behave as perf_analyzer does.
"""

from __future__ import annotations

import os
import sys

from bench.perf_analyzer.run import ensure_tool


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        tool = ensure_tool()
    except FileNotFoundError as e:
        print(f"perf_analyzer: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    os.execve(tool.binary, [str(tool.binary), *args], tool.env)


if __name__ == "__main__":
    main()
