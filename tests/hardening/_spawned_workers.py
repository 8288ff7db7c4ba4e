"""`python -m service` with its workers spawned, as uvicorn starts them with a CUDA device,
and every worker but the first slow to start (``JEM_TEST_SLOW_START_S``), as a worker that is
still importing torch or initialising CUDA is. Run as a script: `spawn` runs this file again in
each worker (as ``__mp_main__``), which is where the delay happens."""

from __future__ import annotations

import os
import time

import service.__main__ as entry

if __name__ == "__mp_main__":  # a spawned worker, before uvicorn runs in it
    try:
        os.close(os.open(os.environ["JEM_TEST_FIRST_WORKER"], os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(float(os.environ["JEM_TEST_SLOW_START_S"]))

if __name__ == "__main__":
    entry._forkable = lambda: False  # type: ignore[assignment]
    entry.main()
