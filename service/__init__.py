"""The JEM inference service: FastAPI app, Predictor, micro-batcher, metrics."""

from service.app import create_app
from service.predictor import Predictor
from service.settings import Settings

__all__ = ["Predictor", "Settings", "create_app"]
