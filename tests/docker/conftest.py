"""Session fixtures: one Docker engine, one base image, one serving image for every test."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import pytest

from tests.docker import _engine as eng

PYTHON_IMAGE = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", eng.DOCKERFILE.read_text(), re.M).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[eng.Engine]:
    try:
        found = eng.find_or_start_engine(tmp_path_factory.mktemp("dockerd"))
    except eng.Unavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    how = "started by this session" if found.started_here else "already running"
    print(f"\nDocker engine {found.version} ({how})")
    yield found
    found.stop()


@pytest.fixture(scope="session")
def base_image(engine: eng.Engine) -> str:
    """The Dockerfile's own base when it can be pulled, else one made from Debian packages."""
    error = eng.pull(PYTHON_IMAGE)
    if error is None:
        return PYTHON_IMAGE
    try:
        return eng.local_base_image()
    except eng.Unavailable as exc:
        pytest.skip(f"no base image: docker pull {PYTHON_IMAGE}: {error}; and {exc}")


@pytest.fixture(scope="session")
def serve_image(base_image: str) -> eng.Build:
    """`docker build` of the serving image, torch from the local wheel directory if any."""
    args = {"PYTHON_IMAGE": base_image}
    wheels = eng.local_torch_wheel_dir()
    with contextlib.ExitStack() as stack:
        if wheels is not None:
            args["TORCH_FIND_LINKS"] = stack.enter_context(eng.wheel_server(wheels))
            args["TORCH_INDEX_URL"] = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
        built = eng.build(eng.SERVE_TAG, eng.REPO, args)
    size_mb = built.size_bytes / 1e6
    print(f"\nimage {built.tag}: {size_mb:.0f} MB, docker build took {built.seconds:.0f} s")
    return built


@pytest.fixture(scope="session")
def digit_pngs() -> tuple[list[bytes], list[int]]:
    """Eight held-out digits as PNG files, with their labels."""
    from tests.deploy._stack import SEED, png_digits
    from training.data import load_digits_dataset

    labels = load_digits_dataset(seed=SEED).test.labels[:8].tolist()
    return png_digits(8), labels
