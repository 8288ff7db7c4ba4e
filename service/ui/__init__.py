"""The browser side of the service: a demo page to try a model, and self-hosted API docs."""

from service.ui.routes import install_ui

__all__ = ["install_ui"]
