"""Beyond one process: bulk generation on a Ray cluster (`ray_bulk`) and HTTP replicas on Ray
Serve (`ray_serve`).

Ray is the optional `ray` extra. Only these modules import it, and only inside functions, so the
rest of gan_serve (and `gan-serve --help`) never pays for it or needs it. They use gan_serve's
Python API (Generator, bulk, fsutil, outputs, http.app) and re-implement none of its contracts.
"""

from __future__ import annotations

from types import ModuleType

from ..errors import GanServeError

INSTALL_RAY = 'pip install -e ".[ray]" from a clone, pip install "gan-serve[ray]" from an index'


def import_ray() -> ModuleType:
    """`ray`, or a one-line GanServeError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise GanServeError(f"this command needs Ray, which is not installed: {INSTALL_RAY}") from None
    return ray


def connect(address: str | None = None) -> bool:
    """Join the Ray cluster at `address` (None: RAY_ADDRESS, a running local cluster, or a new
    local instance); True when this call started Ray (the caller shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    import logging

    try:  # Ray's INFO/WARNING lines (a local start, token auth) would drown the CLI's one line
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    except ConnectionError as exc:
        raise GanServeError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    return True
