"""Beyond one process: bulk generation on a Ray cluster (`ray_bulk`) and HTTP replicas on Ray
Serve (`ray_serve`).

Ray is the optional `ray` extra. Only these modules import it, and only inside functions, so the
rest of gan_serve (and `gan-serve --help`) never pays for it or needs it. They use gan_serve's
Python API (Generator, bulk, fsutil, outputs, http.app) and re-implement none of its contracts.
"""

from __future__ import annotations

from types import ModuleType

from ..errors import GanServeError
from ..extras import missing_extra


def import_ray() -> ModuleType:
    """`ray`, or a one-line MissingExtraError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise missing_extra("ray", "this command", "Ray") from None
    return ray


def connect(address: str | None = None) -> bool:
    """Join the Ray cluster at `address` (None: RAY_ADDRESS, a running local cluster, or a new
    local instance); True when this call started Ray (the caller shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    import logging

    _probe(address)
    try:  # Ray's INFO/WARNING lines (a local start, token auth) would drown the CLI's one line
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    except ConnectionError as exc:
        raise GanServeError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    return True


def _probe(address: str | None, timeout_s: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that takes no TCP connection is one line at once; Ray
    itself would retry for minutes, printing warnings."""
    import socket

    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise GanServeError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise GanServeError(f"cannot reach the Ray cluster at {address}: "
                            f"{exc.strerror or exc or 'timed out'}") from None
