"""`gan-serve serve`: flags over ServeSettings (GAN_SERVE_* environment variables fill the rest)."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..cli_options import ArchKwargsOpt, ArchOpt, OutputRangeOpt, ZDimOpt, env_names
from ..errors import InputError
from ..extras import model_needs, require_extras
from ..request import DEFAULT_LIMITS as TOP
from ..scale.ray_serve import (
    CpusPerReplicaOpt,
    RayAddressOpt,
    RayOpt,
    ReplicasOpt,
    TargetOpt,
    ray_plan,
    serve_on_ray,
)

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


@env_names(ENV_NAMES)
def serve(
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", "--network", metavar="PATH", help="Checkpoint (.pth, .pt, .safetensors), "
        "exported artifact (.onnx, TorchScript .pt) or bundled name; repeat to serve several (POST "
        "bodies pick one with \"model\"). Default: the bundled 'default'.")] = None,
    host: Annotated[str | None, typer.Option(
        metavar="HOST", help="Bind address.  [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(metavar="PORT", help="Port.  [default: 8000]")] = None,
    backend: Annotated[str | None, typer.Option(
        metavar="BACKEND", help="auto, torch, onnx, or torchscript (with --trust-code).")] = None,
    trust_code: Annotated[bool, typer.Option(
        "--trust-code", help="With --backend torchscript: load TorchScript files. This runs code "
        "from the file; use it only for files you trust.")] = False,
    device: Annotated[str | None, typer.Option(
        metavar="DEVICE", help="cpu, cuda, cuda:N (a GPU index) or auto; with --workers, a comma "
        "list such as cuda:0,cuda:1 puts worker i on device i mod its length.")] = None,
    workers: Annotated[int | None, typer.Option(
        metavar="N", help="Worker processes on the one port, each loading the models once; /metrics sums "
        "them all.  [default: 1]")] = None,
    precision: Annotated[str | None, typer.Option(metavar="PRECISION", help="fp32, bf16 or fp16.")] = None,
    max_batch: Annotated[int | None, typer.Option(
        metavar="N", help="Images merged into one forward pass.  [default: 64]")] = None,
    max_delay_ms: Annotated[float | None, typer.Option(
        metavar="MS", help="Extra wait for a batch to fill; requests arriving during a forward pass merge "
        "anyway.  [default: 0]")] = None,
    max_queue: Annotated[int | None, typer.Option(
        metavar="N", help="Images waiting per model before answering 429.  [default: 1024]")] = None,
    max_n: Annotated[int | None, typer.Option(
        metavar="N", help="Images (candidates, interpolation frames) per request, to lower the "
        f"CLI's limit.  [default: {TOP.max_n}]")] = None,
    max_steps: Annotated[int | None, typer.Option(
        metavar="N", help=f"Frames per interpolation segment.  [default: {TOP.max_steps}]")] = None,
    rank_with: Annotated[str | None, typer.Option(
        metavar="PATH", help="Discriminator checkpoint: requests with \"candidates\" get the n "
        "images it scores highest (best-of-N, like generate --rank-with).")] = None,
    directions: Annotated[list[str] | None, typer.Option(
        "--directions", metavar="FILE", help="Directions file (from `gan-serve directions`) that "
        "requests name by its stem in \"directions\" with an \"edit\", and POST /walk walks "
        "(repeatable).")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        metavar="NAME", help="Name of an environment variable holding the API key; clients then send "
        "'Authorization: Bearer <key>' on every route but /healthz and /readyz.")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        metavar="ORIGIN", help="Allow browser calls from this origin (repeatable); CORS is off "
        "otherwise.")] = None,
    header_timeout: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="Seconds a client has to send a request's head (and the most an "
        "idle connection stays open); slower ones are closed.  [default: 10]")] = None,
    body_timeout: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="Seconds a client has to send a request's body before a 408.  "
        "[default: 30]")] = None,
    max_connections: Annotated[int | None, typer.Option(
        metavar="N", help="Open connections at once; beyond them a connection gets 503 as it opens.  "
        "[default: 3/4 of the open-files limit (ulimit -n) less 32, at most 512]")] = None,
    naive_endpoint: Annotated[bool, typer.Option(
        "--naive-endpoint", help="Also expose POST /generate-naive (no batching), for benchmarks.")] = False,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    output_range: OutputRangeOpt = None,
    z_dim: ZDimOpt = None,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    replicas: ReplicasOpt = None,
    target_ongoing_requests: TargetOpt = None,
    cpus_per_replica: CpusPerReplicaOpt = 1.0,
) -> None:
    """Serve POST /generate, POST /interpolate, a web page at /, and /metrics over HTTP."""
    require_extras("gan-serve serve", {"serve": SERVE_MODULES, **model_needs(model)})  # named at once
    import uvicorn
    from pydantic import ValidationError

    from .app import create_app, load_directions, load_models, load_ranker
    from .guard import uvicorn_options
    from .settings import ServeSettings
    from .state import api_key_from_env
    from .workers import check_devices, run_workers

    given = {"models": model, "host": host, "port": port, "backend": backend, "device": device,
             "workers": workers,
             "precision": precision, "max_batch": max_batch, "max_delay_ms": max_delay_ms,
             "max_queue": max_queue, "max_n": max_n, "max_steps": max_steps, "rank_with": rank_with,
             "directions": directions, "api_key_env": api_key_env,
             "cors_origins": cors_origin, "header_timeout_s": header_timeout,
             "body_timeout_s": body_timeout, "max_connections": max_connections,
             "naive_endpoint": naive_endpoint or None,
             "trust_code": trust_code or None, "arch": arch, "arch_kwargs": arch_kwargs,
             "output_range": output_range, "z_dim": z_dim}
    try:
        settings = ServeSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: "
                             f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise InputError(f"invalid serve settings: {problems}") from None
    if (note := settings.connections_note()) is not None:
        typer.echo(note, err=True)
    plan = ray_plan(ray, settings, replicas, target_ongoing_requests, cpus_per_replica, ray_address)
    # load before binding the port: a bad checkpoint is a one-line error, not a failed startup
    generators = load_models(settings if settings.workers == 1 else
                             settings.model_copy(update={"device": settings.devices[0]}))
    ranker = load_ranker(settings)  # a bad discriminator file: one line, before the port
    load_directions(settings, generators)  # a bad directions file, too
    if settings.workers > 1:  # what create_app checks in each worker, checked here once
        check_devices(settings.devices[1:])
        api_key_from_env(settings)
    for note in {G.precision_note for G in generators.values()} - {None}:
        typer.echo(note, err=True)
    if plan is not None:  # each replica loads its own copy (gan_serve.scale.ray_serve)
        del generators
        return serve_on_ray(settings, plan, ray_address)
    names = ", ".join(Path(m).name for m in settings.models)
    options = {"host": settings.host, "port": settings.port, "log_level": "warning",
               "timeout_graceful_shutdown": 10, **uvicorn_options(settings)}
    if settings.workers > 1:  # each worker loads its own copy (gan_serve.http.workers)
        del generators, ranker
        gc.collect()
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
            sys.modules["torch"].cuda.empty_cache()  # the CUDA context itself stays (torch keeps it)
        typer.echo(f"serving {names} on http://{settings.host}:{settings.port}/ with "
                   f"{settings.workers} workers on {settings.device} (Ctrl-C stops them)")
        return run_workers(settings, options)
    app = create_app(settings, generators=generators, ranker=ranker)
    options.update(uvicorn_options(settings, early=app.state.early_refusal))
    # The models, torch and the app are ~200k long-lived objects: a full collection of them takes
    # ~40 ms, which under load lands on some requests' latency. Freeze them out of the collector.
    gc.collect()
    gc.freeze()
    typer.echo(f"serving {names} on http://{settings.host}:{settings.port}/ "
               "(Ctrl-C stops after in-flight requests)")
    uvicorn.run(app, **options)
