"""A real Docker engine for the image and compose tests: found or started, images built.

Everything here shells out to the `docker` CLI, as a user would. Steps that cannot run on this
machine raise `Unavailable` with the exact error, and the tests skip with it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.service_process import REPO

DOCKERFILE = REPO / "Dockerfile"
BASE_SCRIPT = REPO / "deploy" / "docker" / "debian-base.sh"
PROMETHEUS_DOCKERFILE_DIR = REPO / "deploy" / "prometheus"
LOCAL_BASE_TAG = "jem-serve/debian-python:bookworm"
LOCAL_PROMETHEUS_TAG = "jem-serve/prometheus:debian"
SERVE_TAG = "jem-serve:pytest"
# The serving image's own TORCH_VERSION default: the wheel a local directory must hold.
TORCH_VERSION = re.search(r"^ARG TORCH_VERSION=(\S+)$", DOCKERFILE.read_text(), re.M).group(1)  # type: ignore[union-attr]


class Unavailable(Exception):  # noqa: N818 (a condition the tests skip on, with its reason)
    """A step that cannot run on this machine; the message is the exact error."""


def run(
    args: list[str], timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run(["docker", *args], timeout=timeout, check=check)


# ---- the engine ---------------------------------------------------------------------------------


@dataclass
class Engine:
    started_here: bool
    version: str
    log: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop dockerd if this session started it (a running engine is someone else's)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=30)


def _server_version() -> str | None:
    done = run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30, check=False)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def find_or_start_engine(log_dir: Path, wait_s: float = 90) -> Engine:
    """Use the running engine, or start Debian's dockerd (root only) and wait for its API."""
    if shutil.which("docker") is None:
        raise Unavailable("no docker CLI on PATH (make install puts Debian's docker.io there)")
    version = _server_version()
    if version is not None:
        return Engine(started_here=False, version=version)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise Unavailable("no Docker engine answers and no dockerd to start (apt docker.io)")
    if os.geteuid() != 0:
        raise Unavailable("no Docker engine answers, and starting dockerd needs root")
    log = log_dir / "dockerd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise Unavailable(f"dockerd exited with {proc.returncode}: " + " | ".join(tail))
        version = _server_version()
        if version is not None:
            return Engine(started_here=True, version=version, log=log, _proc=proc)
        time.sleep(0.5)
    proc.terminate()
    proc.wait(timeout=60)
    raise Unavailable(f"dockerd did not answer within {wait_s:.0f} s; see {log}")


# ---- images -------------------------------------------------------------------------------------


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False, timeout=30).returncode == 0


def image_label(ref: str, label: str) -> str:
    fmt = f'{{{{index .Config.Labels "{label}"}}}}'
    return docker("image", "inspect", "--format", fmt, ref, timeout=30).stdout.strip()


def pull(ref: str) -> str | None:
    """Pull `ref`; None when done (or already here), else the engine's exact error."""
    if image_exists(ref):
        return None
    done = docker("pull", ref, check=False, timeout=600)
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()


def script_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def local_base_image() -> str:
    """The Debian-made base (deploy/docker/debian-base.sh), reused while the script is unchanged."""
    digest = script_digest(BASE_SCRIPT)
    if (
        image_exists(LOCAL_BASE_TAG)
        and image_label(LOCAL_BASE_TAG, "org.jem-serve.script-sha256") == digest
    ):
        return LOCAL_BASE_TAG
    if shutil.which("mmdebstrap") is None:
        raise Unavailable(
            "no mmdebstrap to make a base image from Debian packages (apt mmdebstrap)"
        )
    run(["bash", str(BASE_SCRIPT), LOCAL_BASE_TAG], timeout=1200)
    return LOCAL_BASE_TAG


@contextmanager
def wheel_server(directory: Path) -> Iterator[str]:
    """Serve a wheel directory on loopback (a pip --find-links page); yield its URL.

    The URL is a build argument, so part of the torch layer's cache key: the port is derived
    from the directory's contents so that the next run finds that layer cached, and any free
    port is taken when that one is busy (torch then installs again, nothing worse).
    """
    handler = partial(_QuietHandler, directory=str(directory))
    names = "".join(sorted(p.name for p in directory.iterdir()))
    stable = 20000 + int(hashlib.sha256(names.encode()).hexdigest(), 16) % 20000
    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", stable), handler)
    except OSError:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def local_torch_wheel_dir() -> Path | None:
    """The directory of pip's find-links (PIP_FIND_LINKS, /opt/wheels) holding the CPU wheel."""
    candidates = [Path(p) for p in os.environ.get("PIP_FIND_LINKS", "").split() if p]
    candidates.append(Path("/opt/wheels"))
    for directory in candidates:
        if directory.is_dir() and any(directory.glob(f"torch-{TORCH_VERSION}-*.whl")):
            return directory
    return None


@dataclass(frozen=True)
class Build:
    tag: str
    seconds: float
    size_bytes: int


def build(
    tag: str, context: Path, build_args: dict[str, str], *extra: str, timeout: float = 1800
) -> Build:
    args = [f"--build-arg={k}={v}" for k, v in build_args.items()]
    start = time.monotonic()
    docker("build", "--network=host", *args, *extra, "-t", tag, str(context), timeout=timeout)
    seconds = time.monotonic() - start
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    return Build(tag, seconds, size)


# ---- containers ---------------------------------------------------------------------------------


def inspect(container: str, fmt: str) -> str:
    return docker("inspect", "--format", fmt, container, timeout=30).stdout.strip()


def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.25
) -> float:
    """Poll `predicate()` until true; return the seconds it took, or fail saying `what`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(poll_s)
    return time.monotonic() - start


def health(container: str) -> str:
    return inspect(container, "{{if .State.Health}}{{.State.Health.Status}}{{end}}")
