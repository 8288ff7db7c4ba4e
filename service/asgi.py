"""The ASGI entry point for servers: `uvicorn service.asgi:app` (settings from JEM_*)."""

from service.app import create_app

__all__ = ["app"]

app = create_app()
