"""The demo page (`/ui/`), and Swagger UI (`/docs`) and ReDoc (`/redoc`) from vendored assets.

Every URL a page uses starts with the request's `root_path`, so the pages work behind a proxy
that serves the service under a path prefix (`python -m service --root-path /prefix`).
"""

from __future__ import annotations

import html
from functools import cache

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, RedirectResponse

from service.ui.assets import (
    IMMUTABLE,
    NO_CACHE,
    PAGE_CSP,
    STATIC_DIR,
    TEMPLATE_DIR,
    VENDOR_DIR,
    AssetFiles,
    docs_csp,
    security_headers,
    vendored,
)

__all__ = ["install_ui"]

router = APIRouter(include_in_schema=False)
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@cache
def _page(root: str) -> str:
    template = (TEMPLATE_DIR / "index.html").read_text()
    return template.replace("{root}", html.escape(root, quote=True))


def _docs_response(page: HTMLResponse) -> HTMLResponse:
    body = bytes(page.body).decode()
    return HTMLResponse(body, headers=security_headers(docs_csp(body), NO_CACHE))


@router.get("/", name="ui_home")
async def home(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{_root(request)}/ui/", status_code=307)


@router.get("/ui/", name="ui_page")
async def ui_page(request: Request) -> HTMLResponse:
    return HTMLResponse(_page(_root(request)), headers=security_headers(PAGE_CSP, NO_CACHE))


@router.get("/docs", name="docs_swagger_ui")
async def swagger_ui(request: Request) -> HTMLResponse:
    root, app = _root(request), request.app
    swagger = vendored()["swagger-ui-dist"]
    page = get_swagger_ui_html(
        openapi_url=root + app.openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=swagger.url(root, "swagger-ui-bundle.js"),
        swagger_css_url=swagger.url(root, "swagger-ui.css"),
        swagger_favicon_url=swagger.url(root, "favicon-32x32.png"),
        oauth2_redirect_url=root + OAUTH2_REDIRECT,
        init_oauth=app.swagger_ui_init_oauth,
        # validatorUrl: Swagger UI would otherwise send the spec to validator.swagger.io
        swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
    )
    return _docs_response(page)


@router.get(OAUTH2_REDIRECT, name="docs_oauth2_redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return _docs_response(get_swagger_ui_oauth2_redirect_html())


@router.get("/redoc", name="docs_redoc")
async def redoc(request: Request) -> HTMLResponse:
    root, app = _root(request), request.app
    page = get_redoc_html(
        openapi_url=root + app.openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url=vendored()["redoc"].url(root, "redoc.standalone.js"),
        redoc_favicon_url=f"{root}/ui/static/favicon.svg",
        with_google_fonts=False,
    )
    return _docs_response(page)


def install_ui(app: FastAPI) -> None:
    """Add the page, the docs pages and their static files. Create the app with
    `docs_url=None, redoc_url=None` so that FastAPI's CDN-loading pages are not added too."""
    app.include_router(router)
    app.mount("/ui/static", AssetFiles(directory=STATIC_DIR, cache_control=NO_CACHE), "ui_static")
    app.mount("/ui/vendor", AssetFiles(directory=VENDOR_DIR, cache_control=IMMUTABLE), "ui_vendor")
