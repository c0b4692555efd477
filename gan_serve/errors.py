"""The exceptions gan_serve raises for user mistakes.

Each message says what was wrong and what is allowed; the CLI prints it as one line,
HTTP turns it into a 4xx JSON body. Anything else escaping is a bug.
"""

from __future__ import annotations


class GanServeError(Exception):
    """Base class: a user-facing error whose message is the whole story."""


class InputError(GanServeError, ValueError):
    """A parameter out of range or malformed: seeds, n, steps, psi, format."""


class UnsupportedPrecisionError(InputError):
    """A precision this machine or this model cannot run (int8 without int8 dot products, or on
    a model other than the built-in DCGAN family); nothing falls back to a slower path."""


class CheckpointError(GanServeError):
    """A model file that cannot be loaded: missing, truncated, corrupt, unknown format."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that needs arbitrary code to load; nothing in it was run."""


class UnknownArchitectureError(CheckpointError):
    """A state dict whose layers match no architecture we can rebuild."""


class OutputError(GanServeError):
    """An output path that cannot be written (missing or read-only folder)."""


class MissingExtraError(GanServeError, ImportError):
    """An optional dependency is not installed; the message names the extra and how to install it."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception as one line for a message of ours: the first line of its text (at most
    `limit` characters), or its type's name when it has no text."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:limit] if limit is not None else line
