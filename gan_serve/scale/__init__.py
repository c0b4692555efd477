"""Beyond one process: bulk generation on a Ray cluster (`ray_bulk`) and HTTP replicas on Ray
Serve (`ray_serve`); without a cluster, a local Ray on loopback that lives as long as the
command (`local_ray`).

Ray is the optional `ray` extra. Only these modules import it, and only inside functions, so the
rest of gan_serve (and `gan-serve --help`) never pays for it or needs it. They use gan_serve's
Python API (Generator, bulk, fsutil, outputs, http.app) and re-implement none of its contracts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from ..errors import GanServeError
from ..extras import missing, missing_extra


def import_ray() -> ModuleType:
    """`ray`, or a one-line MissingExtraError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise missing_extra("ray", "this command", "Ray") from None
    return ray


def require_ray(what: str = "this command") -> None:
    """A missing `ray` as the one-line MissingExtraError, without importing it (seconds)."""
    if sys.modules.get("ray") is None and missing("ray"):
        raise missing_extra("ray", what, "Ray")


def cluster_to_join(address: str | None) -> str | None:
    """The cluster a command joins: `address` (auto, HOST:PORT, ray://HOST:PORT; "local" asks
    for a new local instance), else $RAY_ADDRESS, else one `ray start` runs on this machine;
    None: there is none, and Ray would be a new local instance. Found without importing ray."""
    if address is not None:
        return address
    return os.environ.get("RAY_ADDRESS") or _running_here()


def _running_here() -> str | None:
    """The address of a cluster `ray start` runs on this machine that takes connections (the one
    `ray.init()` with no address joins: Ray writes it to <temp>/ray/ray_current_cluster)."""
    if "RAY_TMPDIR" in os.environ:
        temp = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        temp = os.environ["TMPDIR"]
    else:
        temp = "/tmp" if sys.platform.startswith(("linux", "darwin")) else tempfile.gettempdir()
    try:
        address = Path(temp, "ray", "ray_current_cluster").read_text().strip()
        host, _, port = address.rpartition(":")
        socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
    except (OSError, ValueError):  # no file, a stale one (the cluster stopped), a bad address
        return None
    return address


@contextmanager
def connected(address: str | None = None, num_cpus: int | None = None,
              object_store_memory: int | None = None) -> Iterator[None]:
    """Joined to Ray for the with-block: the cluster `cluster_to_join(address)` names, else a
    new local instance on loopback (`local_ray`; `num_cpus` and `object_store_memory` size it)
    that ends with the block, or with this process. A Ray this process already joined is kept."""
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    import logging

    target = cluster_to_join(address)
    _probe(target)
    if target in (None, "local"):
        from . import local_ray

        with local_ray.session(ray, num_cpus, object_store_memory):
            yield
        return
    from .local_ray import single_machine

    with single_machine(ray) if _on_loopback(target) else contextlib.nullcontext():
        try:  # None: Ray finds $RAY_ADDRESS or the `ray start` cluster itself (and its token mode)
            # Ray's INFO/WARNING lines (token auth, say) would drown the CLI's one line
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as exc:
            raise GanServeError(f"cannot reach the Ray cluster at {target!r}: {exc}") from None
        try:
            yield
        finally:
            ray.shutdown()


def _on_loopback(target: str) -> bool:
    """The cluster's address is loopback (a `ray start --node-ip-address 127.0.0.1` here)."""
    if target == "auto":
        target = os.environ.get("RAY_ADDRESS") or _running_here() or ""
    host = target.removeprefix("ray://").rpartition(":")[0].strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _probe(address: str | None, timeout_s: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that takes no TCP connection is one line at once; Ray
    itself would retry for minutes, printing warnings."""
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
