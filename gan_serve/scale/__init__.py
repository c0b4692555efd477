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
