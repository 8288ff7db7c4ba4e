"""Browser fixtures: Debian's Chromium, headless, driven by Playwright, against a real uvicorn.

The service serves the shipped models behind a path prefix (`--root-path /jem`), with an API
key. Every page opens in a context whose requests all pass through `Proxy`, which plays the
reverse proxy in front: it strips the prefix of loopback requests and forwards them, and it
blocks (and records) anything else: a request to another host, or one to the service that
forgot the prefix. A test fails on any such request, console error or uncaught exception.
Playwright does not route the request that follows a redirect, so the pages are opened at
their own URLs; the redirects' Location headers are checked without a browser.

`JEM_UI_SCREENSHOTS=reports/ui` (`make ui-screenshots`) keeps the screenshots there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, sync_playwright

from tests.service_process import REPO, Server, run_service

CHROMIUM = Path(os.environ.get("JEM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PREFIX = "/jem"
API_KEY = "ui-test-key"
MODELS = "digits-jem,digits-baseline,emoji-jem"  # emoji-jem: the page for a non-digit model
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("ui-server") / "server.log"
    with run_service(
        REPO / "model_store" / "models",
        log,
        "--root-path",
        PREFIX,
        models=MODELS,
        JEM_API_KEYS=API_KEY,
    ) as server:
        yield server


# module scope, not session: sync Playwright runs an event loop on this thread until it stops,
# and every async test collected after it would fail with "another loop is running"
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (make system-deps)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: JEM_UI_SCREENSHOTS (relative to the repository), else a temp dir."""
    wanted = os.environ.get("JEM_UI_SCREENSHOTS")
    if not wanted:
        return tmp_path_factory.mktemp("ui-shots")
    path = REPO / wanted
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@dataclass
class Proxy:
    """The reverse proxy in front of the service, as a Playwright route handler."""

    port: int
    blocked: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def __call__(self, route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob"):
            route.continue_()
        elif url.hostname not in LOOPBACK or url.port != self.port:
            self.blocked.append(route.request.url)
            route.abort("blockedbyclient")
        elif url.path != PREFIX and not url.path.startswith(PREFIX + "/"):
            self.blocked.append(f"{route.request.url} (no {PREFIX} prefix)")
            route.abort("blockedbyclient")
        else:
            stripped = url._replace(path=url.path[len(PREFIX) :] or "/")
            route.fulfill(response=route.fetch(url=urlunsplit(stripped), max_redirects=0))


@dataclass
class Session:
    page: Page
    proxy: Proxy
    base: str  # the service's URL as the browser sees it, prefix included
    expected_console: list[str] = field(default_factory=list)

    def open(self, path: str = "/ui/") -> None:
        self.page.goto(self.base + path)

    def sign_in(self, key: str = API_KEY) -> None:
        self.page.fill("#api-key", key)
        self.page.click("#key-form button")

    def check_clean(self, allowed_console: tuple[str, ...] = ()) -> None:
        allowed = (*self.expected_console, *allowed_console)
        errors = [m for m in self.proxy.console if not any(a in m for a in allowed)]
        assert errors == [], errors
        assert self.proxy.blocked == [], self.proxy.blocked


def open_session(browser: Browser, server: Server, viewport: tuple[int, int]) -> Session:
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    proxy = Proxy(server.port)
    context.route("**/*", proxy)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on(
        "console",
        lambda m: (
            proxy.console.append(f"{m.text} [{m.location['url']}]") if m.type == "error" else None
        ),
    )
    page.on("pageerror", lambda e: proxy.console.append(f"uncaught: {e}"))
    return Session(page, proxy, f"{server.url}{PREFIX}")


@pytest.fixture
def session(browser: Browser, server: Server) -> Iterator[Session]:
    """A desktop-sized page (1280x900); the test calls check_clean() at its end."""
    s = open_session(browser, server, (1280, 900))
    yield s
    s.page.context.close()
