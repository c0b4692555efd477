"""`gan_serve.cli:main`, the entry point of installs made before the commands moved to
gan_serve/commands/ (pyproject names `gan_serve.commands.cli:main`)."""

from .commands.cli import app, main

__all__ = ["app", "main"]
