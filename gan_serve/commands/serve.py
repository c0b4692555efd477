"""`gan-serve serve`: flags -> `ServeSettings` (GAN_SERVE_* environment variables fill the rest)
-> one launch per mode: one uvicorn process, `--workers N` processes, or Ray Serve (`--ray`).

Imports typer only: `serve` parses its options (and says which extra is missing) without
fastapi/uvicorn, which `generate` should not pay for.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InputError
from ..extras import model_needs, require_extras
from ..http import defaults as d
from ..limits import DEFAULT_LIMITS as TOP
from .options import ARCH_HELP, ARCH_KWARGS_HELP, OUTPUT_RANGE_HELP, Z_DIM_HELP, friendly

if TYPE_CHECKING:
    from ..http.settings import ServeSettings
    from ..scale.ray_serve import ReplicaPlan

SERVE_MODULES = ("fastapi", "uvicorn", "prometheus_client", "pydantic_settings")  # the serve extra


# flag -> the ServeSettings field it sets, which GAN_SERVE_<FIELD> sets from the environment too
SETTINGS_OF = {"model": "models", "host": "host", "port": "port", "backend": "backend",
               "trust_code": "trust_code", "device": "device", "workers": "workers",
               "precision": "precision", "max_batch": "max_batch", "max_delay_ms": "max_delay_ms",
               "max_queue": "max_queue", "max_n": "max_n", "max_steps": "max_steps",
               "rank_with": "rank_with", "directions": "directions", "api_key_env": "api_key_env",
               "cors_origin": "cors_origins",
               "header_timeout": "header_timeout_s", "body_timeout": "body_timeout_s",
               "max_connections": "max_connections", "naive_endpoint": "naive_endpoint", "arch": "arch",
               "arch_kwargs": "arch_kwargs", "output_range": "output_range", "z_dim": "z_dim"}
ENV_NAMES = {flag: f"GAN_SERVE_{field.upper()}" for flag, field in SETTINGS_OF.items()}
ENV_NAMES["model"] = "GAN_SERVE_MODELS (a JSON list), GAN_SERVE_MODEL"


def _opt(flag: str, text: str, *decls: str, metavar: str | None = None) -> Any:
    """A serve option whose help names the variable that sets it too: pydantic-settings reads
    them (typer must not: its parsing of lists differs), --help shows them as typer would."""
    return typer.Option(*decls, metavar=metavar, help=f"{text}  [env var: {ENV_NAMES[flag]}]")


RayOpt = Annotated[bool, typer.Option(
    "--ray", help="Serve on Ray Serve: replicas of this app (each with its own models and "
    "batching) behind Ray's HTTP proxy on --host/--port. Needs the ray extra.")]
RayAddressOpt = Annotated[str | None, typer.Option(
    metavar="ADDRESS",
    help="With --ray: the cluster (auto, HOST:PORT, ray://HOST:10001). Default: $RAY_ADDRESS, "
    "else a running local cluster, else a new local Ray instance (on 127.0.0.1 only, ended with "
    "this command).")]
ReplicasOpt = Annotated[str | None, typer.Option(
    metavar="N|MIN-MAX",
    help="With --ray: N replicas, or MIN-MAX to autoscale between them by requests in flight.  "
    "[default: 1]")]
TargetOpt = Annotated[float | None, typer.Option(
    metavar="N",
    help="With --ray and --replicas MIN-MAX: requests in flight per replica that autoscaling aims "
    "for.  [default: half of --max-batch]")]
CpusPerReplicaOpt = Annotated[float, typer.Option(
    metavar="CPUS", help="With --ray: CPUs Ray reserves per replica.")]


@friendly
def serve(
    model: Annotated[list[str] | None, _opt(
        "model", "Checkpoint (.pth, .pt, .safetensors), exported artifact (.onnx, TorchScript .pt) "
        "or bundled name; repeat to serve several (POST bodies pick one with \"model\"). Default: "
        "the bundled 'default'.", "--model", "-m", "--network", metavar="PATH")] = None,
    host: Annotated[str | None, _opt("host", f"Bind address.  [default: {d.HOST}]", metavar="HOST")] = None,
    port: Annotated[int | None, _opt("port", f"Port.  [default: {d.PORT}]", metavar="PORT")] = None,
    backend: Annotated[str | None, _opt(
        "backend", "auto, torch, onnx, or torchscript (with --trust-code).", metavar="BACKEND")] = None,
    trust_code: Annotated[bool, _opt(
        "trust_code", "With --backend torchscript: load TorchScript files. This runs code from the "
        "file; use it only for files you trust.", "--trust-code")] = False,
    device: Annotated[str | None, _opt(
        "device", "cpu, cuda, cuda:N (a GPU index) or auto; with --workers, a comma list such as "
        "cuda:0,cuda:1 puts worker i on device i mod its length.", metavar="DEVICE")] = None,
    workers: Annotated[int | None, _opt(
        "workers", "Worker processes on the one port, each loading the models once; /metrics sums "
        f"them all.  [default: {d.WORKERS}]", metavar="N")] = None,
    precision: Annotated[str | None, _opt(
        "precision", "fp32, bf16, fp16 or int8 (see generate --help).", metavar="PRECISION")] = None,
    max_batch: Annotated[int | None, _opt(
        "max_batch", f"Images merged into one forward pass.  [default: {d.MAX_BATCH}]", metavar="N")] = None,
    max_delay_ms: Annotated[float | None, _opt(
        "max_delay_ms", "Extra wait for a batch to fill; requests arriving during a forward pass "
        f"merge anyway.  [default: {d.MAX_DELAY_MS:g}]", metavar="MS")] = None,
    max_queue: Annotated[int | None, _opt(
        "max_queue", f"Images waiting per model before answering 429.  [default: {d.MAX_QUEUE}]",
        metavar="N")] = None,
    max_n: Annotated[int | None, _opt(
        "max_n", "Images (candidates, interpolation frames) per request, to lower the CLI's limit.  "
        f"[default: {TOP.max_n}]", metavar="N")] = None,
    max_steps: Annotated[int | None, _opt(
        "max_steps", f"Frames per interpolation segment.  [default: {TOP.max_steps}]", metavar="N")] = None,
    rank_with: Annotated[str | None, _opt(
        "rank_with", "Discriminator checkpoint: requests with \"candidates\" get the n images it "
        "scores highest (best-of-N, like generate --rank-with).", metavar="PATH")] = None,
    directions: Annotated[list[str] | None, _opt(
        "directions", "Directions file (from `gan-serve directions`) that requests name by its stem "
        "in \"directions\" with an \"edit\", and POST /walk walks (repeatable).", "--directions",
        metavar="FILE")] = None,
    api_key_env: Annotated[str | None, _opt(
        "api_key_env", "Name of an environment variable holding the API key; clients then send "
        "'Authorization: Bearer <key>' on every route but /healthz and /readyz.", metavar="NAME")] = None,
    cors_origin: Annotated[list[str] | None, _opt(
        "cors_origin", "Allow browser calls from this origin (repeatable); CORS is off otherwise.",
        metavar="ORIGIN")] = None,
    header_timeout: Annotated[float | None, _opt(
        "header_timeout", "Seconds a client has to send a request's head (and the most an idle "
        f"connection stays open); slower ones are closed.  [default: {d.HEADER_TIMEOUT_S:g}]",
        metavar="SECONDS")] = None,
    body_timeout: Annotated[float | None, _opt(
        "body_timeout", "Seconds a client has to send a request's body before a 408.  "
        f"[default: {d.BODY_TIMEOUT_S:g}]",
        metavar="SECONDS")] = None,
    max_connections: Annotated[int | None, _opt(
        "max_connections", "Open connections at once; beyond them a connection gets 503 as it "
        f"opens.  [default: 3/4 of the open-files limit (ulimit -n) less 32, at most {d.MAX_CONNECTIONS}]",
        metavar="N")] = None,
    naive_endpoint: Annotated[bool, _opt(
        "naive_endpoint", "Also expose POST /generate-naive (no batching), for benchmarks.",
        "--naive-endpoint")] = False,
    arch: Annotated[str | None, _opt("arch", ARCH_HELP, "--arch", metavar="MODULE:CLASS")] = None,
    arch_kwargs: Annotated[str | None, _opt(
        "arch_kwargs", ARCH_KWARGS_HELP, "--arch-kwargs", metavar="JSON")] = None,
    output_range: Annotated[str | None, _opt(
        "output_range", OUTPUT_RANGE_HELP, "--output-range", metavar="LOW,HIGH")] = None,
    z_dim: Annotated[int | None, _opt("z_dim", Z_DIM_HELP, "--z-dim", metavar="N")] = None,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    replicas: ReplicasOpt = None,
    target_ongoing_requests: TargetOpt = None,
    cpus_per_replica: CpusPerReplicaOpt = 1.0,
) -> None:
    """Serve POST /generate, POST /interpolate, a web page at /, and /metrics over HTTP."""
    flags = locals()  # every flag by its parameter name (nothing else is bound yet)
    require_extras("gan-serve serve", {"serve": SERVE_MODULES, **model_needs(model)})  # named at once
    from ..http.settings import settings_from

    given = {field: flags[flag] for flag, field in SETTINGS_OF.items()}
    given.update(naive_endpoint=naive_endpoint or None, trust_code=trust_code or None)
    settings = settings_from({k: v for k, v in given.items() if v is not None})
    if (note := settings.connections_note()) is not None:
        typer.echo(note, err=True)
    plan = ray_plan(ray, settings, replicas, target_ongoing_requests, cpus_per_replica, ray_address)
    if plan is not None:
        launch_ray(settings, plan, ray_address)
    elif settings.workers > 1:
        launch_workers(settings)
    else:
        launch_single(settings)


def ray_plan(ray: bool, settings: ServeSettings, replicas: str | None, target: float | None,
             cpus: float, address: str | None) -> ReplicaPlan | None:
    """The replica plan of `serve --ray ...`, None without --ray; InputError for options that do
    not go together (checked before any model loads)."""
    if not ray:
        given = [flag for flag, v in (("--replicas", replicas), ("--target-ongoing-requests", target),
                                      ("--ray-address", address), ("--cpus-per-replica", cpus != 1.0 or None))
                 if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} only apply with --ray")
        return None
    if settings.workers > 1:
        raise InputError("--workers and --ray do not mix: with --ray, --replicas N runs N copies")
    if "," in settings.device:
        raise InputError("with --ray, Ray gives each replica one GPU: use --device cuda, not a list")
    from ..http.state import api_key_from_env
    from ..scale import import_ray
    from ..scale.ray_serve import ReplicaPlan

    api_key_from_env(settings)  # what each replica checks, checked here once
    import_ray()
    return ReplicaPlan.parse(replicas, target, cpus, settings.device)


def _loaded(settings: ServeSettings) -> tuple[dict[str, Any], object]:
    """The models and the ranker, loaded before binding the port: a bad checkpoint or a bad
    discriminator file is a one-line error, not a failed startup."""
    from ..http.app import load_directions, load_models, load_ranker
    from ..http.state import api_key_from_env
    from ..http.workers import check_devices

    generators = load_models(settings if settings.workers == 1 else
                             settings.model_copy(update={"device": settings.devices[0]}))
    ranker = load_ranker(settings)
    load_directions(settings, generators)  # a bad directions file: one line, before the port too
    if settings.workers > 1:  # what create_app checks in each worker, checked here once
        check_devices(settings.devices[1:])
        api_key_from_env(settings)
    for note in {G.precision_note for G in generators.values()} - {None}:
        typer.echo(note, err=True)
    return generators, ranker


def _names(settings: ServeSettings) -> str:
    return ", ".join(Path(m).name for m in settings.models)


def _uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    from ..http.guard import uvicorn_options

    return {"host": settings.host, "port": settings.port, "log_level": "warning",
            "timeout_graceful_shutdown": 10, **uvicorn_options(settings)}


def launch_single(settings: ServeSettings) -> None:
    """One uvicorn process serving the models it loaded here."""
    import uvicorn

    from ..http.app import create_app

    generators, ranker = _loaded(settings)
    app = create_app(settings, generators=generators, ranker=ranker)
    options = _uvicorn_options(settings)
    # The models, torch and the app are ~200k long-lived objects: a full collection of them takes
    # ~40 ms, which under load lands on some requests' latency. Freeze them out of the collector.
    gc.collect()
    gc.freeze()
    typer.echo(f"serving {_names(settings)} on http://{settings.host}:{settings.port}/ "
               "(Ctrl-C stops after in-flight requests)")
    uvicorn.run(app, **options)


def launch_workers(settings: ServeSettings) -> None:
    """`--workers N`: N uvicorn processes on one port, each loading its own copy of the models
    (gan_serve.http.workers); the copy loaded here only checked them, and is let go."""
    from ..http.workers import run_workers

    _loaded(settings)
    gc.collect()
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        sys.modules["torch"].cuda.empty_cache()  # the CUDA context itself stays (torch keeps it)
    typer.echo(f"serving {_names(settings)} on http://{settings.host}:{settings.port}/ with "
               f"{settings.workers} workers on {settings.device} (Ctrl-C stops them)")
    run_workers(settings, _uvicorn_options(settings))


def launch_ray(settings: ServeSettings, plan: ReplicaPlan, address: str | None) -> None:
    """`--ray`: Ray Serve replicas, each loading its own copy (gan_serve.scale.ray_serve); the copy
    loaded here only checked the models."""
    from ..scale.ray_serve import serve_on_ray

    _loaded(settings)
    serve_on_ray(settings, plan, address, announce=typer.echo)
