"""Admission first: while every model's queue is full, a POST to /generate or /interpolate is
answered 429 before anything is done for it (no body parsing, no validation, no latents).

`Admission`, an ASGI middleware, makes the refusal, inside the request counter (CountRequests)
and, with `--cors-origin`, behind CORS (a refusal a browser can read needs CORS headers). It
is the only place that refuses: the earlier second refusal, written by uvicorn's HTTP protocol
itself, leaned on uvicorn internals (BENCHMARKS.md, "Flood refusal on public APIs", has the
figures of both).

A request let through counts as one queued image until it takes its seat (`Entry`): every
request asks for at least one, and without that count a flood arriving at an empty queue would
pass admission whole (its requests' sizes are in bodies not yet read) and be refused one by one
deep in the routes, after parsing and validation. So it refuses what the batcher would refuse
once the requests already let through are seated (a full queue admits no request of any size),
except that while the server is overloaded a malformed request or an unknown model name hears
429 instead of its 4xx. A request without the API key (when one is set) goes on to the app and
gets its 401.

The count is kept only for a request whose body is there when the app first reads it (a
flood's requests arrive whole): one whose body is withheld, trickled or still in flight stops
counting at that read (`Entry.watch`), moments after its head, so sockets that send a head
and hold back the body cannot fill the queue while the model is idle. If its body comes later,
the batcher's own admission (`Batcher.admit`, in the route) decides.
"""

from __future__ import annotations

import asyncio
import json
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batcher import Overloaded
from .state import ServeState, scope_key_ok

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
            busy = refusal(self.state, scope)
            if busy is not None:
                scope["route"] = self.routes[scope["path"]]
                return await self.refuse(busy, send)
            return await run_entered(self.app, Entry(self.state), scope, receive, send)
        return await self.app(scope, receive, send)

    @staticmethod
    async def refuse(busy: Overloaded, send: Send) -> None:
        body, headers = _reply(busy)
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def refusal(state: ServeState, scope: dict) -> Overloaded | None:
    """Overloaded when no model can take a request now (and the caller has the key)."""
    if not state.ready or not state.models:
        return None
    if not all(batcher.full(state.entering) for _, batcher in state.models.values()):
        return None
    if not scope_key_ok(state.api_key, scope):
        return None
    _, batcher = next(iter(state.models.values()))
    return batcher.overloaded(state.entering)


class Entry:
    """A request let past admission that has not taken its seat in a queue yet: it counts as
    one image in every queue (state.entering) until it is seated, ends, or waits for its body."""

    __slots__ = ("open", "reads", "state")

    def __init__(self, state: ServeState) -> None:
        self.state, self.open, self.reads = state, True, 0
        state.entering += 1

    def leave(self) -> None:
        if self.open:
            self.open = False
            self.state.entering -= 1

    def watch(self, receive: Receive) -> Receive:
        """The server's `receive`, for the app: a read that the body already received cannot
        answer at once ends the count. A callback queued before the read runs on the next turn
        of the event loop, after a read that did not wait and before one that waits returns."""
        loop = asyncio.get_running_loop()

        async def watched() -> Message:
            if self.open:
                loop.call_soon(self._unless_read, self.reads)
            message = await receive()
            self.reads += 1
            return message

        return watched

    def _unless_read(self, reads: int) -> None:
        if self.reads == reads:  # that read is still waiting: the body is not here
            self.leave()


_entry: ContextVar[Entry | None] = ContextVar("gan_serve_entry", default=None)


async def run_entered(app: ASGIApp, entry: Entry, scope: Scope, receive: Receive, send: Send) -> None:
    """Run the request with its Entry, which leaves when the request ends if not seated before;
    `receive` must be the server's own (not one behind a middleware's timer or task)."""
    token = _entry.set(entry)
    try:
        await app(scope, entry.watch(receive), send)
    finally:
        entry.leave()
        _entry.reset(token)


def seated() -> None:
    """The running request took its seat (routes call this right after Batcher.admit): from
    now on the queue itself counts its images."""
    entry = _entry.get()
    if entry is not None:
        entry.leave()


def _reply(busy: Overloaded) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    body = json.dumps({"error": str(busy)}).encode()
    return body, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                  (b"retry-after", str(busy.retry_after).encode())]
