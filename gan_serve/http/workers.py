"""`serve --workers N`: N uvicorn worker processes on one port, one model copy each.

The parent checks the settings and models (one-line errors before binding), makes a temporary
directory, and starts uvicorn with the import string of `worker_app`. Each worker process:

- reads the parent's settings from GAN_SERVE_WORKER_SETTINGS (JSON);
- claims the lowest free slot 0..N-1 by locking a file (the lock dies with the process, so a
  worker that uvicorn restarts takes the slot of the one that died) and runs on device
  `devices[slot % len(devices)]`;
- keeps its metrics in PROMETHEUS_MULTIPROC_DIR, which every worker's /metrics sums.

The parent removes the directory when uvicorn returns.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ..runtime import environ_set
from .guard import HeadDeadline
from .settings import ServeSettings

SETTINGS_ENV = "GAN_SERVE_WORKER_SETTINGS"
DIR_ENV = "GAN_SERVE_WORKER_DIR"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_held: list[int] = []  # this worker's slot lock (a file descriptor), kept open for its lifetime


class WorkerHTTP(HeadDeadline):
    """The head deadline protocol by import string (uvicorn pickles its config for each worker,
    and a class made at run time does not pickle); worker_app sets the timeout from settings."""


def device_of(settings: ServeSettings, slot: int) -> str:
    """Worker `slot` runs on device slot mod len(devices): cuda:0,cuda:1 with 4 workers puts
    workers 0 and 2 on cuda:0, 1 and 3 on cuda:1."""
    devices = settings.devices
    return devices[slot % len(devices)]


def check_devices(devices: list[str]) -> None:
    """GPU indices the parent did not load a model on: each must exist (a one-line error)."""
    from ..backends import check_gpu_index, cuda_device_count, parse_device

    gpus = [d for d in devices if parse_device(d)[1] is not None]
    if gpus:
        count = cuda_device_count()
        for device in gpus:
            check_gpu_index(device, count, "the CUDA driver")


def claim_slot(directory: Path, workers: int) -> int:
    """The lowest slot no living worker holds, locked until this process exits."""
    import fcntl  # POSIX: uvicorn's workers run on Linux and macOS

    for slot in range(workers):
        fd = os.open(directory / f"slot-{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held.append(fd)
        return slot
    raise RuntimeError(f"all {workers} worker slots in {directory} are taken")


def forget_dead_workers(metrics_dir: Path) -> None:
    """Drop the live gauges of workers that died without stopping (killed, crashed)."""
    from prometheus_client import multiprocess

    pids = {int(m.group(1)) for f in metrics_dir.glob("gauge_live*_*.db")
            if (m := re.search(r"_(\d+)\.db$", f.name))}
    for pid in pids - {os.getpid()}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(metrics_dir))
        except PermissionError:
            pass  # alive, someone else's


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn calls this factory in each worker)."""
    from .app import create_app, load_models

    settings = ServeSettings.model_validate_json(os.environ[SETTINGS_ENV])
    directory = Path(os.environ[DIR_ENV])
    slot = claim_slot(directory, settings.workers)
    forget_dead_workers(Path(os.environ[METRICS_ENV]))
    settings = settings.model_copy(update={"device": device_of(settings, slot)})
    WorkerHTTP.head_timeout = settings.header_timeout_s
    app = create_app(settings, generators=load_models(settings), worker=slot)
    gc.collect()  # as in the single-process path: keep the models out of the collector's way
    gc.freeze()
    return app


def run_workers(settings: ServeSettings, uvicorn_kwargs: dict[str, Any]) -> None:
    """Serve with settings.workers processes; returns when uvicorn stops (Ctrl-C, SIGTERM)."""
    import uvicorn

    directory = Path(tempfile.mkdtemp(prefix="gan-serve-workers-"))
    metrics_dir = directory / "metrics"
    metrics_dir.mkdir()
    # the workers are spawned (not forked): they inherit these before importing prometheus_client
    env = {SETTINGS_ENV: settings.model_dump_json(), DIR_ENV: str(directory), METRICS_ENV: str(metrics_dir)}
    try:
        with environ_set(env):
            uvicorn.run(f"{__name__}:worker_app", factory=True, workers=settings.workers,
                        **{**uvicorn_kwargs, "http": f"{__name__}:WorkerHTTP"})
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(directory)
