"""A real server for the tritonclient tests (test_clients.py, test_grpc_clients.py): one
`python -m service` with /v2 and gRPC on and API keys set, shared by the package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_process import Server, free_port, run_service


@pytest.fixture(scope="package")
def server(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("v2") / "server.log"
    port = free_port()
    with run_service(store_root, log, JEM_GRPC_PORT=str(port), JEM_API_KEYS="k1") as server:
        yield server
