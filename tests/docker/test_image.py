"""The serving image, built and run by a real Docker engine as a user runs it.

`docker run -p 127.0.0.1:PORT:8000` with a read-only root filesystem; Docker's own HEALTHCHECK
says healthy; predict, ood and generate through the published port; `docker stop` drains;
a broken model store stops the container, failed, in seconds.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx
import pytest

from model_store import ModelStore, default_root
from tests.docker import _engine as eng
from tests.service_process import free_port, load_scaled, seconds_to_notice_failure

# The first test also waits for the session's image builds, which can outlast the 600 s default.
pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.timeout(2400),
]

MODEL = "digits-jem"
READ_ONLY = ["--read-only", "--tmpfs", "/tmp"]  # as docs/deployment.md runs it
# seconds of SGLD, inside `docker stop --time 40`: 500 steps of 32 chains took 27.6 s of one
# core with the width-128 digits-jem:37 (the network of :39) on a loaded machine (1,500 steps:
# 80-91 s; with the width-64 digits-jem:35, 1,500 steps took 28 s)
LONG_GENERATION = {"num_samples": 32, "steps": 500, "seed": 0}


@contextmanager
def container(image: str, *args: str, port: int | None = None) -> Iterator[str]:
    """`docker run -d` the image; the container is removed on the way out, whatever happened."""
    name = f"jem-pytest-{uuid.uuid4().hex[:8]}"
    publish = ["-p", f"127.0.0.1:{port}:8000"] if port is not None else []
    eng.docker("run", "-d", "--name", name, *publish, *args, image, timeout=120)
    try:
        yield name
    finally:
        eng.docker("rm", "-f", "-v", name, check=False, timeout=120)


def logs(name: str) -> str:
    done = eng.docker("logs", name, check=False, timeout=60)
    return done.stdout + done.stderr


def wait_healthy(name: str, timeout_s: float = 240) -> float:
    def healthy() -> bool:
        status = eng.health(name)
        assert status != "unhealthy", logs(name)[-4000:]
        assert eng.inspect(name, "{{.State.Running}}") == "true", logs(name)[-4000:]
        return status == "healthy"

    return eng.wait_for(healthy, timeout_s, f"{name} healthy", poll_s=0.5)


@pytest.fixture(scope="module")
def running(serve_image: eng.Build) -> Iterator[tuple[str, str]]:
    """One container from the image, healthy, published on a free loopback port."""
    port = free_port()
    with container(serve_image.tag, *READ_ONLY, port=port) as name:
        seconds = wait_healthy(name)
        print(f"\n{name}: healthy {seconds:.1f} s after docker run (Docker's HEALTHCHECK)")
        yield name, f"http://127.0.0.1:{port}"


def test_predict_ood_and_generate_through_the_published_port(
    running: tuple[str, str], digit_pngs: tuple[list[bytes], list[int]]
) -> None:
    _, url = running
    pngs, labels = digit_pngs
    with httpx.Client(base_url=url, timeout=60) as client:
        files = [("files", (f"{i}.png", png, "image/png")) for i, png in enumerate(pngs)]
        r = client.post(f"/v1/models/{MODEL}/predict", files=files)
        assert r.status_code == 200, r.text
        predicted = [p["label"] for p in r.json()["predictions"]]
        assert sum(p == t for p, t in zip(predicted, labels, strict=True)) >= len(labels) - 1

        r = client.post(f"/v1/models/{MODEL}/ood", files=files[:2])
        assert r.status_code == 200, r.text
        assert {"energy", "grad_norm"} <= set(r.json()["results"][0]["scores"])

        r = client.post(
            f"/v1/models/{MODEL}/generate", json={"num_samples": 2, "steps": 5, "seed": 0}
        )
        assert r.status_code == 200, r.text
        assert len(r.json()["samples"]) == 2

        r = client.post(f"/v1/models/{MODEL}/predict", json={"pixels": "not an image"})
        assert r.status_code == 422
        assert set(r.json()["error"]) == {"code", "message"}


def test_package_data_is_in_the_image(running: tuple[str, str]) -> None:
    """The web page and its vendored assets travel with the `service` package."""
    _, url = running
    page = httpx.get(f"{url}/ui/", timeout=30)
    assert page.status_code == 200, page.text
    assets = re.findall(r'(?:src|href)="[^"]*?(/ui/(?:static|vendor)/[^"?]+)', page.text)
    assert assets, page.text[:2000]
    for asset in assets:
        r = httpx.get(f"{url}{asset}", timeout=30)
        assert r.status_code == 200, asset


def test_runs_as_10001_on_a_read_only_root(running: tuple[str, str]) -> None:
    name, _ = running
    assert eng.inspect(name, "{{.Config.User}}") == "10001:10001"
    assert eng.docker("exec", name, "id", "-u").stdout.strip() == "10001"
    assert eng.inspect(name, "{{.HostConfig.ReadonlyRootfs}}") == "true"
    for path in ("/app/model_store/models/x", "/opt/venv/x", "/x"):
        done = eng.docker("exec", name, "touch", path, check=False)
        assert done.returncode != 0
        assert "Read-only file system" in done.stderr, done.stderr


def test_image_holds_no_compiler_cuda_training_code_or_tests(serve_image: eng.Build) -> None:
    probe = (
        "import importlib.util as u, os, shutil, torch;"
        "print([c for c in ('gcc', 'cc', 'c++', 'g++', 'clang', 'nvcc') if shutil.which(c)]);"
        "print(torch.version.cuda, torch.backends.cudnn.is_available());"
        "print([m for m in ('training', 'tests', 'bench', 'sklearn') if u.find_spec(m)]);"
        "print(sorted(os.listdir('/app')))"
    )
    out = eng.docker("run", "--rm", serve_image.tag, "python", "-c", probe).stdout.splitlines()
    assert out == ["[]", "None False", "[]", "['jem', 'model_store', 'service']"], out
    # the store holds the latest version of each shipped model (SHIP_MODELS), not the history
    listing = eng.docker("run", "--rm", serve_image.tag, "python", "-m", "model_store", "list")
    shipped = ModelStore(default_root())
    expected = [f"{n}:{shipped.resolve(n).version}" for n in shipped.list_models()]
    assert _listed(listing.stdout) == expected, listing.stdout
    nvidia = eng.docker(
        "run", "--rm", serve_image.tag, "sh", "-c", "pip list 2>/dev/null | grep -ci nvidia || true"
    ).stdout.strip()
    assert nvidia == "0"
    assert serve_image.size_bytes < 1.5e9, "a CUDA torch would make it several GB"


def _listed(listing: str) -> list[str]:
    """'name:version' of each version in `python -m model_store list`'s output."""
    refs, name = [], ""
    for line in listing.splitlines():
        if line.startswith(" "):
            refs.append(f"{name}:{line.split()[0]}")
        else:
            name = line.strip()
    return refs


def test_docker_stop_drains_in_flight_requests(serve_image: eng.Build) -> None:
    port = free_port()
    with container(serve_image.tag, *READ_ONLY, port=port) as name:
        wait_healthy(name)
        url = f"http://127.0.0.1:{port}/v1/models/{MODEL}/generate"
        results: list[httpx.Response | BaseException] = []

        def generate() -> None:  # seconds of SGLD: still in flight when the signal comes
            try:
                results.append(httpx.post(url, json=LONG_GENERATION, timeout=120))
            except BaseException as exc:
                results.append(exc)

        thread = threading.Thread(target=generate)
        thread.start()
        time.sleep(1.5)
        assert not results, "finished before docker stop: nothing in flight to drain"
        eng.docker("stop", "--time", "40", name, timeout=120)
        thread.join(timeout=120)
        assert isinstance(results[0], httpx.Response), results[0]
        assert results[0].status_code == 200, results[0].text
        assert eng.inspect(name, "{{.State.ExitCode}}") == "0", logs(name)[-3000:]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_broken_model_store_fails_the_container_fast(
    serve_image: eng.Build, workers: str
) -> None:
    """An empty store mounted over the shipped one: exit 3, the reason in the log, within 10 s
    of the start (an idle 2-core machine; stretched by the load average on a shared one)."""
    empty_store = ["--tmpfs", "/app/model_store/models:ro"]
    env = ["-e", f"JEM_WORKERS={workers}"]
    with container(serve_image.tag, *READ_ONLY, *empty_store, *env) as name:
        eng.wait_for(lambda: eng.inspect(name, "{{.State.Running}}") == "false", 180, "exit")
        started, finished = eng.inspect(name, "{{.State.StartedAt}} {{.State.FinishedAt}}").split()
        seconds = _seconds_between(started, finished)
        code = eng.inspect(name, "{{.State.ExitCode}}")
        text = logs(name)
    bound = load_scaled(10)
    print(f"\nbroken store, {workers} worker(s): exit {code} after {seconds:.1f} s (< {bound:.0f})")
    assert code == "3", text[-3000:]
    assert "model 'digits-jem' cannot be served: no model named 'digits-jem'" in text
    assert seconds_to_notice_failure(text) < load_scaled(5), text[-3000:]
    assert seconds < bound, text[-3000:]


def _seconds_between(start: str, end: str) -> float:
    """Docker's RFC 3339 timestamps (nanoseconds) -> seconds between them."""

    def parse(stamp: str) -> datetime:
        head, _, frac = stamp.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")

    return (parse(end) - parse(start)).total_seconds()
