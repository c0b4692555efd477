"""Admission: a flood is refused before any work, in the HTTP protocol where it can be
(EarlyRefusal) and in the middleware elsewhere, and requests let in count as queued until seated."""

from __future__ import annotations

import asyncio
import json

import httpx2

from gan_serve.http import ServeSettings, create_app
from gan_serve.http.guard import uvicorn_options

from .conftest import Slow


def request(seed: int, close: bool = False) -> bytes:
    body = json.dumps({"seed": seed, "n": 1}).encode()
    return (b"POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + (b"Connection: close\r\n" if close else b"")
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, value = line.decode().split(":", 1)
        headers[name.strip().lower()] = value.strip()
    return status, headers, await reader.readexactly(int(headers["content-length"]))


async def flood(port: int, clients: int, then: bytes = b"") -> list[
        tuple[asyncio.StreamReader, asyncio.StreamWriter, tuple[int, dict[str, str], bytes]]]:
    """`clients` requests written at one instant, each on its own keep-alive connection (and
    `then`, 0.1 s later, on one more)."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients + bool(then))]
    for i, (_, writer) in enumerate(conns[:clients]):
        writer.write(request(i))
    if then:
        await asyncio.sleep(0.1)
        conns[-1][1].write(then)
    answers = await asyncio.gather(*(answer(reader) for reader, _ in conns))
    return [(r, w, a) for (r, w), a in zip(conns, answers, strict=True)]


def test_a_flood_at_an_empty_queue_lets_in_what_fits_and_refuses_the_rest_before_the_app(G, live):
    settings = ServeSettings(max_queue=4, max_batch=4)
    app = create_app(settings, generators={"g": Slow(G, 0.5)})
    reached: list[int] = []

    async def counting(scope, receive, send):  # what the protocol let through to the ASGI app
        if scope["type"] == "http" and scope["path"] == "/generate":
            reached.append(1)
        await app(scope, receive, send)

    async def scenario(port: int) -> None:
        results = await flood(port, 20)
        codes = sorted(a[0] for _, _, a in results)
        # the 4 let in (one image each) fill the queue; nobody else got past the protocol
        assert codes == [200] * 4 + [429] * 16, codes
        assert len(reached) == 4
        status, headers, body = next(a for _, _, a in results if a[0] == 429)
        assert headers["content-type"] == "application/json" and int(headers["retry-after"]) >= 1
        assert "busy" in json.loads(body)["error"] and "date" in headers
        assert "(4 images queued" in json.loads(body)["error"]  # seated or not yet, they fill it
        # a refused connection stays usable: once the queue is free, the same socket is served
        reader, writer, _ = next(r for r in results if r[2][0] == 429)
        writer.write(request(99))
        assert (await answer(reader))[0] == 200
        for _, w, _ in results:
            w.close()
        # Connection: close is honoured on a refusal too
        results = await flood(port, 4, then=request(7, close=True))
        assert [a[0] for _, _, a in results] == [200] * 4 + [429]
        assert await results[-1][0].read() == b""  # the server closed that connection
        for _, w, _ in results:
            w.close()

    with live(counting, **uvicorn_options(settings, early=app.state.early_refusal)) as server:
        asyncio.run(scenario(server.port))
        text = httpx2.get(server.url + "/metrics").text
    assert 'gan_serve_requests_total{route="/generate",status="429"} 17.0' in text
    assert app.state.serve.entering == 0


def test_requests_let_in_stop_counting_when_they_fail_or_are_seated(G, client):
    state = client.app.state.serve
    assert client.post("/generate", json={"seed": 1, "n": 0}).status_code == 422
    assert client.post("/generate", json={"seed": 1, "model": "nope"}).status_code == 404
    assert client.post("/generate", json={"seed": 1, "n": 2}).status_code == 200
    assert client.post("/interpolate", json={"seeds": [1, 2], "steps": 3}).status_code == 200
    assert state.entering == 0
    _, batcher = next(iter(state.models.values()))
    assert batcher.pending == 0


def test_without_the_protocol_the_middleware_counts_and_refuses_the_same_way(G, live):
    app = create_app(ServeSettings(max_queue=4, max_batch=4), generators={"g": Slow(G, 0.5)})

    async def scenario(port: int) -> None:
        results = await flood(port, 12)
        codes = sorted(a[0] for _, _, a in results)
        assert codes.count(200) >= 1 and codes.count(429) >= 8 and set(codes) == {200, 429}, codes
        for _, w, _ in results:
            w.close()

    with live(app) as server:  # uvicorn's own protocol: refusals come from the Admission middleware
        asyncio.run(scenario(server.port))
    assert app.state.serve.entering == 0
