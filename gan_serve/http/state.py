"""What the routes share: loaded models with their batchers, settings, metrics, the API key."""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass, field

import numpy as np
from fastapi import HTTPException, Request

from ..errors import InputError
from .batcher import Batcher
from .metrics import Metrics
from .settings import ServeSettings


class RequestTimeout(Exception):
    """A request waited longer than request_timeout_s."""


@dataclass
class ServeState:
    settings: ServeSettings
    metrics: Metrics
    models: dict[str, tuple[object, Batcher]] = field(default_factory=dict)  # name -> (G, batcher)
    api_key: str | None = None
    ready: bool = False

    def model(self, name: str | None) -> tuple[object, Batcher]:
        if name is None:
            name = next(iter(self.models))
        if name not in self.models:
            raise HTTPException(404, f"unknown model {name!r}; loaded: {', '.join(self.models)}")
        return self.models[name]

    async def run(self, batcher: Batcher, z: np.ndarray) -> np.ndarray:
        try:
            return await asyncio.wait_for(batcher.submit(z), self.settings.request_timeout_s)
        except TimeoutError:
            raise RequestTimeout() from None


def api_key_from_env(settings: ServeSettings) -> str | None:
    if settings.api_key_env is None:
        return None
    key = os.environ.get(settings.api_key_env, "")
    if not key:
        raise InputError(f"--api-key-env {settings.api_key_env}: that environment variable is empty "
                         "or unset; export it with the key clients must send")
    return key


def get_state(request: Request) -> ServeState:
    return request.app.state.serve


def require_key(request: Request) -> None:
    """Bearer-key check for every route but health (when a key is configured)."""
    key = get_state(request).api_key
    if key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), key.encode()):
        raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
