"""Slow and idle clients (slowloris): a deadline for a request's head, one for its body, and a
cap on connections, so a few hundred trickling sockets cannot starve everyone else.

uvicorn times out idle keep-alive connections, but not a request whose header lines trickle in,
nor a body that never finishes. The head deadline lives in the protocol (the ASGI app only sees a
request once its head is complete); the body deadline wraps the ASGI `receive` (BodyLimit in
app.py). While `max_connections` connections are open, their requests get uvicorn's 503
(`limit_concurrency`), and a connection beyond them gets a 503 as soon as it opens (`Refused`):
uvicorn would hold it, a file descriptor each, until its head came or the head deadline, so a
wave of idle sockets would use up the open-files limit and the clients after it would be reset.
The default cap comes from that limit (settings.default_max_connections).

A flood is refused by the Admission middleware (admission.py), on the ASGI interface only.

uvicorn offers no head deadline, so HeadDeadline subclasses the protocol class `http="auto"`
picks (uvicorn.protocols.http.auto.AutoHTTPProtocol; Config's public `http=` takes a class). It
overrides only asyncio.Protocol's own methods, and reads four attributes that uvicorn does not
document: `cycle` (the request being read or answered; None before the first) and its
`response_complete`, which tell "waiting for a head" from "busy with a request", and `transport`
and `loop`, for the close and the timer. uvicorn 0.29, 0.45 and 0.55 have all four (test_guard.py
passed on each; it fails if the deadline stops cutting a trickling head).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from weakref import WeakKeyDictionary

from fastapi import HTTPException
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .settings import ServeSettings


class Refused(asyncio.Protocol):
    """A connection over the cap: a 503 the moment it opens, and closed as soon as that is
    written, so its file descriptor is free again within the loop turn that opened it."""

    BODY = json.dumps({"error": "too many open connections; retry later"}).encode()
    REPLY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
             b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n%s" % (len(BODY), BODY))

    def __init__(self, transport: asyncio.Transport) -> None:
        transport.write(self.REPLY)
        transport.close()


# connections open per server (its uvicorn Config): what Refused holds the cap against
_open: WeakKeyDictionary[Any, int] = WeakKeyDictionary()


class HeadDeadline(AutoHTTPProtocol):
    """uvicorn's HTTP protocol (httptools, else h11), closing a connection that has not sent a
    complete request head within `head_timeout` seconds of opening or of its last response
    (between 1 and 2 timeouts: the check runs every `head_timeout`), or whose head runs past
    `max_head_bytes` (431)."""

    head_timeout = 10.0
    max_head_bytes = 1 << 20  # bytes read while waiting for a head (h11 caps heads, httptools does not)

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._server, self._cap = config, config.limit_concurrency

    def connection_made(self, transport: asyncio.Transport) -> None:
        if self._cap is not None and _open.get(self._server, 0) >= self._cap:
            transport.set_protocol(Refused(transport))
            return
        _open[self._server] = _open.get(self._server, 0) + 1
        super().connection_made(transport)
        self._head_of, self._head_bytes = None, 0
        self._arm()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:  # these bytes start (or are) a request head
            if cycle is not self._head_of:
                self._head_of, self._head_bytes = cycle, 0
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                     b"content-length: 0\r\nconnection: close\r\n\r\n")
                self.transport.close()
                return
        super().data_received(data)

    def _arm(self) -> None:
        cycle = self.cycle
        # the request we were waiting for when armed: None or a finished one means "waiting for a head"
        self._watched = (cycle, cycle is None or cycle.response_complete)
        self._deadline = self.loop.call_later(self.head_timeout, self._check)

    def _check(self) -> None:
        if self.transport.is_closing():
            return
        watched, was_waiting = self._watched
        if was_waiting and self.cycle is watched:  # no new request head in a whole period
            self.transport.close()
        else:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:  # only for connections not Refused
        _open[self._server] -= 1
        if hasattr(self, "_deadline"):
            self._deadline.cancel()
        super().connection_lost(exc)


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """The uvicorn.run / uvicorn.Config options that bound slow and surplus clients."""
    protocol = type("GanServeHTTP", (HeadDeadline,), {"head_timeout": settings.header_timeout_s})
    return {"http": protocol, "limit_concurrency": settings.max_connections,
            "timeout_keep_alive": min(5.0, settings.header_timeout_s)}


async def receive_within(receive: Any, deadline: float, timeout_s: float) -> dict:
    """`await receive()`, or 408 when the body is still incomplete at `deadline` (loop time)."""
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        return await asyncio.wait_for(receive(), max(remaining, 0.0))
    except TimeoutError:
        raise HTTPException(408, f"request body not received within {timeout_s:g} s") from None
