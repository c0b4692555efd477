"""Admission first: while every model's queue is full, a POST to /generate or /interpolate is
answered 429 before anything is done for it (no body parsing, no validation, no latents).

An ASGI middleware, so a flood of requests costs the event loop the least it can: each refusal
is a header lookup and a small JSON reply. It refuses exactly what the batcher would refuse
(a full queue admits no request of any size), except that while the server is overloaded a
malformed request or an unknown model name hears 429 instead of its 4xx. A request without
the API key (when one is set) goes on to the app and gets its 401.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from .batcher import Overloaded
from .state import ServeState, key_ok

QUEUED_ROUTES = ("/generate", "/interpolate")


@dataclass(frozen=True)
class _Route:  # what CountRequests reads from scope["route"] for its label
    path: str


class Admission:
    """ASGI middleware: 429 at once for queued routes while every model's queue is full."""

    def __init__(self, app: object, state: ServeState) -> None:
        self.app, self.state = app, state
        self.routes = {path: _Route(path) for path in QUEUED_ROUTES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.routes:
            busy = self.refusal(scope)
            if busy is not None:
                scope["route"] = self.routes[scope["path"]]
                return await self.refuse(busy, send)
        return await self.app(scope, receive, send)

    def refusal(self, scope: dict) -> Overloaded | None:
        """Overloaded when no model can take a request now (and the caller has the key)."""
        state = self.state
        if not state.ready or not state.models:
            return None
        if not all(batcher.full() for _, batcher in state.models.values()):
            return None
        if state.api_key is not None:
            auth = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not key_ok(state.api_key, auth.decode("latin-1")):
                return None
        _, batcher = next(iter(state.models.values()))
        return batcher.overloaded()

    @staticmethod
    async def refuse(busy: Overloaded, send: Send) -> None:
        body = json.dumps({"error": str(busy)}).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(busy.retry_after).encode())]})
        await send({"type": "http.response.body", "body": body})
