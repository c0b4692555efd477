"""The FastAPI app: lifespan (load, warm, batchers), errors as JSON, limits, metrics, page."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__
from ..errors import GanServeError, InputError
from ..generator import Generator
from ..models import resolve_model
from .batcher import Batcher, Overloaded
from .metrics import Metrics
from .routes import naive_router, router
from .schemas import ModelInfo
from .settings import ServeSettings
from .state import RequestTimeout, ServeState, api_key_from_env, get_state, require_key

log = logging.getLogger("gan_serve.http")
STATIC = Path(str(resources.files(__package__).joinpath("static")))


def load_models(settings: ServeSettings) -> dict[str, Generator]:
    """Load every --model once; names are bundled names or file stems and must differ."""
    models: dict[str, Generator] = {}
    for spec in settings.models:
        _, name = resolve_model(spec)
        if name in models:
            raise InputError(f"two models are named {name!r}; rename one of the files")
        models[name] = Generator.load(spec, backend=settings.backend, device=settings.device,
                                      precision=settings.precision)
    return models


def create_app(settings: ServeSettings | None = None,
               generators: dict[str, Generator] | None = None) -> FastAPI:
    """Build the service; `generators` (name -> Generator) skips loading from settings.models."""
    settings = settings or ServeSettings()
    state = ServeState(settings, Metrics(), api_key=api_key_from_env(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gens = generators if generators is not None else await asyncio.to_thread(load_models, settings)
        for name, G in gens.items():
            await asyncio.to_thread(G.synthesize, np.zeros((1, G.z_dim), np.float32))  # warm up
            batcher = Batcher(G, name, settings.max_batch, settings.max_delay_ms,
                              settings.max_queue, state.metrics)
            batcher.start()
            state.models[name] = (G, batcher)
        state.ready = True
        yield
        state.ready = False
        for _, batcher in state.models.values():
            await batcher.stop()

    app = FastAPI(title="gan-serve", version=__version__, lifespan=lifespan,
                  description="Seed-reproducible images from DCGAN-style generators.")
    app.state.serve = state
    app.include_router(router)
    if settings.naive_endpoint:
        app.include_router(naive_router)
    app.include_router(_info_router())
    app.include_router(_health_router())
    _add_page(app)
    _add_errors(app)
    app.add_middleware(CountRequests, metrics=state.metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def _info_router() -> APIRouter:
    info = APIRouter(tags=["service"], dependencies=[Depends(require_key)])

    @info.get("/models", response_model=list[ModelInfo])
    def models(state: ServeState = Depends(get_state)) -> list[ModelInfo]:
        """The loaded models: name, architecture, z_dim, resolution, backend, precision."""
        return [ModelInfo(name=name, model_id=G.model_id, architecture=G.spec.describe(),
                          z_dim=G.z_dim, img_resolution=G.img_resolution, channels=G.channels,
                          backend=G.backend, precision=G.runner.precision,
                          placeholder=G.is_placeholder)
                for name, (G, _) in state.models.items()]

    @info.get("/metrics", response_class=Response)
    def metrics(state: ServeState = Depends(get_state)) -> Response:
        """Prometheus text format."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return info


def _health_router() -> APIRouter:
    health = APIRouter(tags=["health"])

    @health.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @health.get("/readyz")
    def readyz(state: ServeState = Depends(get_state)) -> JSONResponse:
        """Models are loaded and warmed up."""
        ready = state.ready
        return JSONResponse({"ready": ready, "models": list(state.models)}, 200 if ready else 503)

    return health


def _add_page(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_errors(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(GanServeError)
    async def gan_error(_: Request, exc: GanServeError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        def where(loc: tuple) -> str:
            return ".".join(str(p) for p in loc if p != "body" and not isinstance(p, int)) or "body"

        parts = [f"{where(e['loc'])}: {e['msg']}" for e in exc.errors()]
        return _error(422, "; ".join(parts))

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return _error(429, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RequestTimeout)
    async def timeout(_: Request, exc: RequestTimeout) -> JSONResponse:
        return _error(503, "the request timed out waiting for the model; retry later", {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, f"internal error ({type(exc).__name__}); the server keeps serving")


class CountRequests:
    """Requests by route template and status (pure ASGI: no per-request task or stream)."""

    def __init__(self, app: object, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return await self.app(scope, receive, send)  # type: ignore[operator]
        status = [500]

        async def record(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)  # type: ignore[operator]
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, str(status[0])).inc()


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for request bodies over `max_bytes`, by Content-Length or by counting the stream."""

    def __init__(self, app: object, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return await self.app(scope, receive, send)  # type: ignore[operator]
        too_large = _error(413, f"request body over {self.max_bytes} bytes")
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await too_large(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)  # type: ignore[operator]
        except _TooLarge:
            await too_large(scope, receive, send)
