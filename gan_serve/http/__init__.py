"""The HTTP service: FastAPI app (`create_app`), dynamic batching, metrics and a web page."""

from .app import create_app
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
