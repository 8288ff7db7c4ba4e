"""Static files of the demo page and the vendored docs assets: content types, caching, CSP.

Our own files (`static/`) are answered `Cache-Control: no-cache`: browsers keep them but
revalidate with the ETag on each load (a 304), so a new release shows at once. Vendored files
live in folders named by their version (`vendor/swagger-ui-dist-5.35.0/`), so a URL never
changes content: `immutable`, a year. Every response carries a Content-Security-Policy that
allows nothing outside the service.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, PathLike, StaticFiles
from starlette.types import Scope

__all__ = [
    "PAGE_CSP",
    "STATIC_DIR",
    "TEMPLATE_DIR",
    "VENDOR_DIR",
    "AssetFiles",
    "Vendored",
    "docs_csp",
    "security_headers",
    "vendored",
]

UI_DIR = Path(__file__).resolve().parent
STATIC_DIR = UI_DIR / "static"
TEMPLATE_DIR = UI_DIR / "templates"
VENDOR_DIR = UI_DIR / "vendor"

NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"

# Explicit, so that the answer does not depend on the host's /etc/mime.types (slim images
# have none, and Python's fallback table differs between versions).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE, NOTICE
}

# The demo page: its own script and stylesheet only; images from data:/blob: URLs it makes.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def docs_csp(html: str) -> str:
    """The policy for a Swagger UI / ReDoc page: the inline start-up script allowed by its
    sha256 (nothing else inline runs). Both libraries set styles at run time (ReDoc through
    styled-components), hence style-src 'unsafe-inline'; ReDoc's search runs in a blob: worker."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def security_headers(csp: str, cache_control: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


@dataclass(frozen=True)
class Vendored:
    """One npm package vendored by `service.ui.vendor` (see vendor/VENDOR.json)."""

    name: str
    version: str
    license: str
    directory: str
    integrity: str
    files: dict[str, str]  # file name -> sha256

    def url(self, root_path: str, file: str) -> str:
        if file not in self.files:
            raise KeyError(f"{file} is not vendored from {self.name}; see VENDOR.json")
        return f"{root_path}/ui/vendor/{self.directory}/{file}"


@cache
def vendored() -> dict[str, Vendored]:
    record = json.loads((VENDOR_DIR / "VENDOR.json").read_text())
    return {name: Vendored(name=name, **entry) for name, entry in record.items()}


class AssetFiles(StaticFiles):
    """StaticFiles with explicit content types, one Cache-Control policy and the page's CSP."""

    def __init__(self, *, directory: Path, cache_control: str) -> None:
        super().__init__(directory=directory)
        self.headers = security_headers(PAGE_CSP, cache_control)

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        suffix = Path(full_path).suffix
        response: Response = FileResponse(
            full_path,
            status_code=status_code,
            stat_result=stat_result,
            media_type=CONTENT_TYPES.get(suffix, "application/octet-stream"),
            headers=self.headers,
        )
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            response = NotModifiedResponse(response.headers)
            response.headers.update(self.headers)
        return response
