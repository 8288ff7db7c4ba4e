"""Hardening fixtures: the service tests' small calibrated digits model in a temporary store.

`store_root` is built once per session (read-only for tests); tests that publish new versions
copy it first (`store_copy`).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import Digits, build_store, make_settings, serve
from tests.service.conftest import digits as digits  # re-exported fixture

__all__ = ["Digits"]


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hardening-store")
    build_store(root)
    return root


@pytest.fixture
def store_copy(store_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(store_root, root)
    return root


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(store_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(store_root)) as c:
        yield c
