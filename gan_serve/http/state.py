"""What the routes share: loaded models with their batchers, settings, metrics, the API key."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import sys
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Depends, HTTPException, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..directions import Directions, LatentEdit
from ..errors import InputError
from ..generator import Generator
from ..request import Limits
from .batcher import Batcher, LazyLatents, Seat
from .metrics import Metrics
from .settings import ServeSettings

T = TypeVar("T")
Ranker = tuple[Any, Any]  # (discriminator module, its DiscriminatorConfig): serve --rank-with
NO_RANKER = ("this server has no discriminator to rank candidates with; start it with "
             "`gan-serve serve --rank-with D.pth` (or GAN_SERVE_RANK_WITH), or leave out candidates")


NO_DIRECTIONS = ("this server has no directions to edit along; start it with `gan-serve serve "
                 "--directions dirs.safetensors` (or GAN_SERVE_DIRECTIONS), or leave out edit")


class RequestTimeout(Exception):
    """A request waited longer than request_timeout_s."""


@dataclass
class ServeState:
    settings: ServeSettings
    metrics: Metrics
    api_key: str | None = None
    models: dict[str, tuple[Generator, Batcher]] = field(default_factory=dict)  # name -> (G, batcher)
    ready: bool = False
    # requests let past admission that have not taken their seat in a queue yet (admission.Entry):
    # each will ask for at least one image, so admission counts them as queued already
    entering: int = 0
    # PNG/JPEG/GIF encoding runs here (started by the app's lifespan): Pillow releases the GIL
    # while it compresses, so requests encode in parallel instead of queueing on the event loop.
    encoder: ThreadPoolExecutor | None = None
    ranker: Ranker | None = None  # best-of-N by discriminator, loaded from settings.rank_with
    directions: dict[str, Directions] = field(default_factory=dict)  # settings.directions by stem
    # POST /project: one at a time (each keeps the CPU busy for seconds); others get 429
    projecting: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    def discriminator(self, G: Generator) -> Any:  # a torch module
        """The discriminator that ranks G's candidates; 422 when there is none or it does not fit."""
        if self.ranker is None:
            raise InputError(NO_RANKER)
        from ..discriminator import check_compatible

        D, config = self.ranker
        check_compatible(config, G)
        return D

    def named_directions(self, name: str | None) -> Directions:
        """The directions file called `name` (the only one when None): 422 when there is none."""
        if not self.directions:
            raise InputError(NO_DIRECTIONS)
        if name is None:
            if len(self.directions) > 1:
                raise InputError(f"name the directions: one of {', '.join(self.directions)}")
            name = next(iter(self.directions))
        if name not in self.directions:
            raise InputError(f"unknown directions {name!r}; loaded: {', '.join(self.directions)}")
        return self.directions[name]

    def edit(self, directions: str | None, edit: str | dict[str, float] | None) -> LatentEdit | None:
        """A request's `edit` along its `directions`, resolved (None without an edit)."""
        if edit is None:
            if directions is not None:
                raise InputError("directions were given without an edit to make with them")
            return None
        return self.named_directions(directions).edit(edit)

    def model(self, name: str | None) -> tuple[Generator, Batcher]:
        """The model called `name` (the first one loaded when None); 404 for unknown names."""
        if name is None:
            name = next(iter(self.models))
        if name not in self.models:
            raise HTTPException(404, f"unknown model {name!r}; loaded: {', '.join(self.models)}")
        return self.models[name]

    async def run(self, batcher: Batcher, z: np.ndarray | LazyLatents, seat: Seat | None = None
                  ) -> np.ndarray:
        """Images of latents `z` through the model's batcher (in the `seat` admitted for them),
        within the request timeout."""
        try:
            if sys.version_info >= (3, 11):  # a timer on this task: no task of its own per request
                async with asyncio.timeout(self.settings.request_timeout_s):
                    return await batcher.submit(z, seat)
            return await asyncio.wait_for(batcher.submit(z, seat), self.settings.request_timeout_s)
        except TimeoutError:
            raise RequestTimeout() from None

    async def encode(self, fn: Callable[..., T], *args: object) -> T:
        """Run an encoding function in the encoder pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.encoder, functools.partial(fn, *args))


def api_key_from_env(settings: ServeSettings) -> str | None:
    if settings.api_key_env is None:
        return None
    key = os.environ.get(settings.api_key_env, "")
    if not key:
        raise InputError(f"--api-key-env {settings.api_key_env}: that environment variable is empty "
                         "or unset; export it with the key clients must send")
    return key


# Dependencies are async: FastAPI runs a sync dependency in a thread pool, a hop per request.
async def get_state(request: Request) -> ServeState:
    return request.app.state.serve


def key_ok(key: str | None, authorization: str) -> bool:
    """Whether an Authorization header value carries the key (always, when no key is set)."""
    if key is None:
        return True
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), key.encode())


def scope_key_ok(key: str | None, scope: dict) -> bool:
    """key_ok for a raw ASGI scope's first Authorization header, as Request.headers reads it
    (for middlewares and the HTTP protocol, before any Request exists)."""
    if key is None:
        return True
    auth = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    return key_ok(key, auth.decode("latin-1"))


# Declares the key in the OpenAPI document (components.securitySchemes); the check is ours below.
bearer = HTTPBearer(auto_error=False, scheme_name="apiKey",
                    description="The key of --api-key-env, when the server was started with one.")


async def require_key(request: Request, _: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
    """Bearer-key check for every route but health (when a key is configured)."""
    if not key_ok(request.app.state.serve.api_key, request.headers.get("authorization", "")):
        raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})


State = Annotated[ServeState, Depends(get_state)]


class KeyFirstRoute(APIRoute):
    """A route that checks the API key before it reads the body: a caller without the key
    gets 401, never a 422 that tells it how the body was wrong."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def key_first(request: Request) -> Response:
            await require_key(request)
            return await handler(request)

        return key_first
