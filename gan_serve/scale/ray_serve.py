"""`gan-serve serve --ray`: the same FastAPI app (gan_serve.http.app.create_app) as a Ray Serve
deployment, one app per replica.

Each replica builds its own app from the settings: it loads the models, warms them up and runs
its own dynamic batcher (gan_serve.http.batcher), exactly as one `gan-serve serve` process does;
Ray Serve's proxy spreads requests over the replicas and scales their number between
`--replicas MIN-MAX` by the requests in flight. A replica therefore answers with the bytes of
the CLI for the same seeds and the same backend. Replicas run what `--backend auto` picks on
their node; on a cluster of mixed machines pin `--backend/--precision` for the same bytes
everywhere (the X-Backend header says what answered).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from . import connected, import_ray

if TYPE_CHECKING:
    from ..http.settings import ServeSettings

APP_NAME = "gan-serve"

@dataclass(frozen=True)
class ReplicaPlan:
    """How many replicas Ray Serve runs, and what each reserves."""

    min_replicas: int = 1
    max_replicas: int = 1  # above min_replicas: autoscaling
    target_ongoing_requests: float | None = None  # None: half of max_ongoing_requests
    cpus: float = 1.0  # reserved per replica
    gpus: float = 0.0

    @classmethod
    def parse(cls, replicas: str | None, target: float | None = None, cpus: float = 1.0,
              device: str = "cpu") -> ReplicaPlan:
        """`--replicas 2` or `--replicas 1-8`, checked (InputError with what is allowed)."""
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", replicas or "1")
        lo, hi = (int(m[1]), int(m[2] or m[1])) if m else (0, 0)
        if not m or not 1 <= lo <= hi <= 1024:
            raise InputError("--replicas must be N or MIN-MAX with 1 <= MIN <= MAX <= 1024, "
                             f"got {replicas!r}")
        if target is not None and not target > 0:
            raise InputError(f"--target-ongoing-requests must be above 0, got {target}")
        if not cpus > 0:
            raise InputError(f"--cpus-per-replica must be above 0, got {cpus}")
        return cls(lo, hi, target, cpus, 1.0 if device.startswith("cuda") else 0.0)

    def deployment_options(self, max_batch: int) -> dict[str, Any]:
        """Ray Serve deployment options. A replica takes up to max_batch requests at once (Serve's
        default, 5, would starve the batcher); more wait in Ray's queue."""
        ongoing = max(max_batch, 2)
        options: dict[str, Any] = {
            "max_ongoing_requests": ongoing,
            "ray_actor_options": {"num_cpus": self.cpus, "num_gpus": self.gpus},
        }
        if self.max_replicas > self.min_replicas:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests or ongoing / 2}
        else:
            options["num_replicas"] = self.min_replicas
        return options


class _Replica:
    """One Ray Serve replica: `create_app(settings)` built in the replica's own process."""

    def __init__(self, settings: object) -> None:
        from ..runtime import configure_threads
        from .local_ray import replica_on_loopback

        configure_threads()  # before the models load torch or ONNX Runtime (Ray sets OMP_NUM_THREADS)
        replica_on_loopback()  # on gan-serve's local Ray, no port of a replica leaves the machine
        self.settings = settings

    def __serve_build_asgi_app__(self) -> object:
        from ..http.app import create_app

        return create_app(self.settings)


def _absolute(path: str) -> str:
    """An existing file's absolute path; anything else (a bundled model's name) as given."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def replica_settings(settings: ServeSettings, plan: ReplicaPlan) -> ServeSettings:
    """The settings each replica builds its app from: every file named by an absolute path (a
    replica's working directory is Ray's, not this command's), on CUDA where the plan has GPUs."""
    return settings.model_copy(update={
        "models": [_absolute(m) for m in settings.models],
        "directions": [_absolute(d) for d in settings.directions],
        "rank_with": None if settings.rank_with is None else _absolute(settings.rank_with),
        "device": "cuda" if plan.gpus else settings.device})


def application(settings: object, plan: ReplicaPlan) -> object:
    """The Ray Serve application (for serve.run) serving `settings` with `plan`'s replicas."""
    import_ray()
    from ray import serve

    settings = replica_settings(settings, plan)
    options = plan.deployment_options(settings.max_batch)
    key_env = settings.api_key_env
    if key_env and os.environ.get(key_env):  # replicas read the key from their own environment
        options["ray_actor_options"]["runtime_env"] = {"env_vars": {key_env: os.environ[key_env]}}
    ingress = serve.ingress()(_Replica)
    return serve.deployment(name=APP_NAME, **options)(ingress).bind(settings)


PLAN_KEYS = ("replicas", "target_ongoing_requests", "cpus_per_replica")


def builder_args(args: dict[str, Any]) -> tuple[object, ReplicaPlan]:
    """A serve config's `args` (or `serve run ... key=value`): ServeSettings fields (the names
    of `GAN_SERVE_*` without the prefix) plus `replicas`, `target_ongoing_requests` and
    `cpus_per_replica`, as in `serve --ray`. InputError says what was wrong."""
    from ..http.settings import settings_from

    fields = {k: v for k, v in args.items() if k not in PLAN_KEYS}
    if isinstance(fields.get("models"), str):  # `serve run ... models=a.onnx` passes a string
        fields["models"] = [m for m in fields["models"].split(",") if m]
    settings = settings_from(fields, "gan-serve args", "args")
    target = args.get("target_ongoing_requests")
    plan = ReplicaPlan.parse(str(args.get("replicas", 1)), None if target is None else float(target),
                             float(args.get("cpus_per_replica", 1.0)), settings.device)
    return settings, plan


def app_builder(args: dict[str, Any]) -> object:
    """The import path of a Ray Serve config file (`serve deploy`, `serve run`, KubeRay):
    `gan_serve.scale.ray_serve:app_builder`; its `args` as `builder_args` reads them."""
    return application(*builder_args(args))


def deploy(settings: object, plan: ReplicaPlan) -> None:
    """Start Serve's proxy on settings.host/port and run the app until its replicas are ready."""
    from ray import serve

    quiet = {"log_level": "WARNING"}  # Serve's INFO lines would bury the CLI's own
    serve.start(http_options={"host": settings.host, "port": settings.port},
                logging_config=quiet)
    serve.run(application(settings, plan), name=APP_NAME, route_prefix="/", logging_config=quiet)


def serve_on_ray(settings: object, plan: ReplicaPlan, address: str | None,
                 announce: Callable[[str], None] = print) -> None:
    """`gan-serve serve --ray`: deploy, say where (`announce`), then wait for Ctrl-C and take the
    app down again."""
    import logging

    from ray import serve

    with connected(address):  # a local Ray it starts (loopback only) goes with the app
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its INFO lines would bury ours
        try:
            deploy(settings, plan)
            replicas = (f"{plan.min_replicas} Ray Serve replicas" if plan.min_replicas == plan.max_replicas
                        else f"{plan.min_replicas} to {plan.max_replicas} Ray Serve replicas (autoscaling)")
            announce(f"serving {', '.join(Path(m).name for m in settings.models)} on "
                       f"http://{settings.host}:{settings.port}/ with {replicas} (Ctrl-C stops them)")
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            serve.delete(APP_NAME)
