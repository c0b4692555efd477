"""The HTTP service: FastAPI app (`create_app`), dynamic batching, metrics and a web page.

Names load on first use, so `gan-serve --help` registers `serve` without importing fastapi.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServeSettings":
        from .settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'gan_serve.http' has no attribute {name!r}")
