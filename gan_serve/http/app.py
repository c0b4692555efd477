"""The FastAPI app: lifespan (load, warm up, batchers), errors as JSON, limits, metrics, page."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from .. import __version__
from ..directions import Directions
from ..errors import GanServeError, InputError
from ..extras import missing
from ..generator import Generator
from ..models import resolve_model
from ..runtime import yield_to_the_event_loop
from .admission import Admission
from .batcher import Batcher, Overloaded
from .guard import receive_within
from .metrics import CountRequests, Metrics
from .routes import naive_router, router
from .schemas import DirectionScore, DirectionsInfo, ErrorBody, ModelInfo, Readiness
from .settings import ServeSettings
from .state import Ranker, RequestTimeout, ServeState, State, api_key_from_env, require_key, scope_key_ok

log = logging.getLogger("gan_serve.http")
STATIC = Path(str(resources.files(__package__).joinpath("static")))
SWAGGER_UI = "/static/swagger-ui"  # swagger-ui-dist's files, shipped in static/swagger-ui/


def load_models(settings: ServeSettings) -> dict[str, Generator]:
    """Load every --model once; names are bundled names or file stems and must differ."""
    models: dict[str, Generator] = {}
    for spec in settings.models:
        _, name = resolve_model(spec)
        if name in models:
            raise InputError(f"two models are named {name!r}; rename one of the files")
        models[name] = Generator.load(spec, backend=settings.backend, device=settings.device,
                                      precision=settings.precision, options=settings.load_options(),
                                      trust_code=settings.trust_code)
    return models


def _probe_small_passes(name: str, G: Generator) -> None:
    """A lone request's pass at one row instead of a micro-batch, where the kernels here give the
    same bits (Generator.probe_small_passes): the server's common case is one image."""
    sizes, full = G.probe_small_passes(), G.runner.micro_batch
    if sizes:
        log.info("model %s: passes of fewer than %d images run at %s rows (the same bits as a full "
                 "pass on probe latents)", name, full, ", ".join(map(str, sizes)))
    else:
        log.info("model %s: every pass runs %d rows (smaller passes give other bits here)", name, full)


def load_ranker(settings: ServeSettings) -> Ranker | None:
    """The discriminator of --rank-with (best-of-N over HTTP), or None."""
    if settings.rank_with is None:
        return None
    from ..discriminator import load_discriminator

    return load_discriminator(settings.rank_with)


def load_directions(settings: ServeSettings, models: dict[str, Generator]) -> dict[str, Directions]:
    """The --directions files by stem, each checked against a loaded model's z_dim."""
    found: dict[str, Directions] = {}
    for path in settings.directions:
        dirs = Directions.load(path)
        if dirs.source in found:
            raise InputError(f"two directions files are named {dirs.source!r}; rename one")
        sizes = sorted({G.z_dim for G in models.values()})
        if sizes and dirs.z_dim not in sizes:  # fits no model: refused before the port opens
            dirs.check_model(sizes[0])
        found[dirs.source] = dirs
    return found


def create_app(settings: ServeSettings | None = None,
               generators: dict[str, Generator] | None = None, worker: int | None = None,
               ranker: Ranker | None = None) -> FastAPI:
    """Build the service; `generators` (name -> Generator) skips loading settings.models;
    `worker`: this process's index under `serve --workers` (sent as the X-Worker header);
    `ranker` (a loaded discriminator and its config) skips loading settings.rank_with."""
    settings = settings or ServeSettings()
    state = ServeState(settings, Metrics(), api_key=api_key_from_env(settings), ranker=ranker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gens = generators if generators is not None else await asyncio.to_thread(load_models, settings)
        if state.ranker is None:
            state.ranker = await asyncio.to_thread(load_ranker, settings)
        state.directions = load_directions(settings, gens)
        state.encoder = ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="gan-encode",
                                           initializer=yield_to_the_event_loop)
        for name, G in gens.items():
            await asyncio.to_thread(_probe_small_passes, name, G)
            await asyncio.to_thread(G.synthesize, np.zeros((1, G.z_dim), np.float32))  # warm up
            batcher = Batcher(G, name, settings.max_batch, settings.max_delay_ms,
                              settings.max_queue, state.metrics)
            batcher.start()
            state.models[name] = (G, batcher)
        state.ready = True
        yield
        state.ready = False  # uvicorn has stopped accepting; drain what was accepted
        for _, batcher in state.models.values():
            await batcher.stop()
        state.encoder.shutdown(wait=True)
        state.models.clear()
        state.metrics.close()

    app = FastAPI(title="gan-serve", version=__version__, lifespan=lifespan,
                  description="Seed-reproducible images from DCGAN-style generators.",
                  docs_url=None, redoc_url=None, openapi_url=None,
                  generate_unique_id_function=lambda route: route.name)  # client functions: generate, ...
    app.state.serve = state
    app.include_router(router)
    if settings.naive_endpoint:
        app.include_router(naive_router)
    app.include_router(_service_router())
    app.include_router(_health_router())
    _add_docs(app)
    _add_page(app)
    _add_errors(app)
    # outermost last: CountRequests, CORS, Admission, BodyLimit
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s,
                       api_key=state.api_key)
    app.add_middleware(Admission, state=state)  # outside BodyLimit: it watches the server's receive
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(CountRequests, metrics=state.metrics, worker=worker)  # outermost: early 413s count too
    return app


def _service_router() -> APIRouter:
    service = APIRouter(tags=["service"], dependencies=[Depends(require_key)],
                        responses={401: {"model": ErrorBody}})

    @service.get("/models", response_model=list[ModelInfo])
    async def models(state: State) -> list[ModelInfo]:
        """The loaded models: name, architecture, z_dim, resolution, backend, precision, and
        whether videos can be made (the video extra)."""
        video = not missing("av")
        return [ModelInfo(name=name, model_id=G.model_id, architecture=G.spec.describe(),
                          z_dim=G.z_dim, img_resolution=G.img_resolution, channels=G.channels,
                          backend=G.backend, precision=G.runner.precision,
                          placeholder=G.is_placeholder, video=video)
                for name, (G, _) in state.models.items()]

    @service.get("/directions", response_model=list[DirectionsInfo])
    async def directions(state: State) -> list[DirectionsInfo]:
        """The directions files the server loaded (serve --directions): their names, with the
        score of each direction; an empty list when there are none."""
        return [DirectionsInfo(name=name, directions_id=d.id, method=d.method, z_dim=d.z_dim,
                               directions=[DirectionScore(name=n, score=s)
                                           for n, s in zip(d.names, d.scores, strict=True)])
                for name, d in state.directions.items()]

    @service.get("/metrics", response_class=Response, responses={200: {
        "description": "Prometheus text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics(state: State) -> Response:
        """Prometheus text format."""
        return Response(state.metrics.exposition(), media_type=state.metrics.content_type)

    return service


def _health_router() -> APIRouter:
    health = APIRouter(tags=["health"])

    @health.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive (no API key needed)."""
        return {"status": "ok"}

    @health.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz(state: State) -> JSONResponse:
        """Models are loaded and warmed up: 200, else 503 (no API key needed)."""
        ready = state.ready
        return JSONResponse({"ready": ready, "models": list(state.models)}, 200 if ready else 503)

    return health


def _document(app: FastAPI, keyed: bool) -> dict:
    """The OpenAPI document; the security scheme (and the 401 answers) only on a server with a
    key, so that clients generated from a keyless server's document need no credentials."""
    first = app.openapi_schema is None
    schema = FastAPI.openapi(app)  # built once, then cached on the app
    if first and not keyed:
        schema.get("components", {}).pop("securitySchemes", None)
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            operation.pop("security", None)
            operation.get("responses", {}).pop("401", None)
    return schema


def _add_docs(app: FastAPI) -> None:
    # The OpenAPI schema and its page follow the API key like every other route.
    app.openapi = functools.partial(_document, app, app.state.serve.api_key is not None)
    docs = APIRouter(include_in_schema=False, dependencies=[Depends(require_key)])

    @docs.get("/openapi.json")
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @docs.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(  # Swagger UI from the package, not a CDN: /docs works offline
            openapi_url="/openapi.json", title="gan-serve API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png")

    app.include_router(docs)


def _add_page(app: FastAPI) -> None:
    # The page holds no data (it calls the API with the key the user types), so it is public.
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error body: {"error": "..."}."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_errors(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        return error(422, str(exc))

    @app.exception_handler(GanServeError)
    async def gan_error(_: Request, exc: GanServeError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(StarletteHTTPException)  # ours, and the router's 404/405
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI's "error parsing the body"
            why = {UnicodeDecodeError: "the bytes are not UTF-8 text", RecursionError: "nested too deeply"}
            reason = why.get(type(exc.__cause__), type(exc.__cause__).__name__)
            return error(422, f"body: not valid JSON ({reason})")  # malformed JSON is 422
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        def where(loc: tuple) -> str:
            return ".".join(str(p) for p in loc if p != "body" and not isinstance(p, int)) or "body"

        return error(422, "; ".join(f"{where(e['loc'])}: {e['msg']}" for e in exc.errors()))

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return error(429, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RequestTimeout)
    async def timeout(_: Request, exc: RequestTimeout) -> JSONResponse:
        return error(503, "the request timed out waiting for the model; retry later", {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")  # a bug: the request gets a 500, the server keeps serving
        return error(500, f"internal error ({type(exc).__name__}); the server keeps serving")


class BodyLimit:
    """413 for request bodies over `max_bytes`, by Content-Length or by counting the stream;
    408 for a body not complete `timeout_s` after the app starts reading it. With an `api_key`,
    a request without it is never refused by its Content-Length: the key comes first, and the
    routes that need it answer 401 before reading any body (state.KeyFirstRoute)."""

    def __init__(self, app: object, max_bytes: int, timeout_s: float = 30.0,
                 api_key: str | None = None) -> None:
        self.app, self.max_bytes, self.timeout_s, self.api_key = app, max_bytes, timeout_s, api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body over {self.max_bytes} bytes"
        length = dict(scope.get("headers", [])).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes and scope_key_ok(self.api_key, scope):
            return await error(413, message)(scope, receive, send)
        seen, deadline, complete = 0, None, False

        async def counted() -> dict:
            nonlocal seen, deadline, complete
            if complete:  # after the body: e.g. waiting for a disconnect, no deadline
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout_s
            msg = await receive_within(receive, deadline, self.timeout_s)
            complete = not msg.get("more_body", False)
            seen += len(msg.get("body", b""))
            if seen > self.max_bytes:  # FastAPI re-raises an HTTPException met while reading
                raise HTTPException(413, message)
            return msg

        await self.app(scope, counted, send)
