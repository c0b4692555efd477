"""Admission: a flood is refused by the middleware before any work (its bodies are not even
read), and requests let in count as queued until seated."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time

import httpx2

from gan_serve.http import ServeSettings, create_app
from gan_serve.http.admission import Entry
from gan_serve.http.batcher import Seat
from gan_serve.http.guard import uvicorn_options
from gan_serve.http.metrics import Metrics
from gan_serve.http.state import ServeState

from .conftest import ServeProcess, Slow


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


def test_a_flood_at_an_empty_queue_lets_in_what_fits_and_refuses_the_rest_unread(G, live):
    settings = ServeSettings(max_queue=4, max_batch=4)
    app = create_app(settings, generators={"g": Slow(G, 0.5)})
    read: set[int] = set()  # the requests whose body the app read

    async def counting(scope, receive, send):
        async def reading() -> dict:
            read.add(id(scope))
            return await receive()

        await app(scope, reading if scope.get("path") == "/generate" else receive, send)

    async def scenario(port: int) -> None:
        results = await flood(port, 20)
        codes = sorted(a[0] for _, _, a in results)
        # the 4 let in (one image each) fill the queue; nobody else's body was read
        assert codes == [200] * 4 + [429] * 16, codes
        assert len(read) == 4
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

    with live(counting, **uvicorn_options(settings)) as server:
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


def test_on_uvicorns_own_protocol_the_middleware_counts_and_refuses_the_same_way(G, live):
    app = create_app(ServeSettings(max_queue=4, max_batch=4), generators={"g": Slow(G, 0.5)})

    async def scenario(port: int) -> None:
        results = await flood(port, 12)
        codes = sorted(a[0] for _, _, a in results)
        assert codes.count(200) >= 1 and codes.count(429) >= 8 and set(codes) == {200, 429}, codes
        for _, w, _ in results:
            w.close()

    with live(app) as server:  # uvicorn's own protocol, without gan-serve's head deadline
        asyncio.run(scenario(server.port))
    assert app.state.serve.entering == 0



def withholding(port: int, clients: int) -> list[socket.socket]:
    """`clients` connections that each send a POST /generate head and never its body."""
    head = (b"POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(clients)]
    for s in socks:
        s.sendall(head)
    return socks


def starve(port: int, queue: int) -> None:
    """32 sockets withhold their bodies, twice (they reconnect); a request sent meanwhile gets 200."""
    for _ in range(2):
        held = withholding(port, 32)
        time.sleep(0.5)  # the server has read every head
        r = httpx2.post(f"http://127.0.0.1:{port}/generate", json={"n": 1}, timeout=10)
        assert r.status_code == 200, r.text
        # the attack was real: at least a queue's worth was let in and still waits for its body
        waiting = [s for s in held if not select.select([s], [], [], 0)[0]]
        assert len(waiting) >= queue, len(waiting)
        for s in held:
            s.close()


def test_heads_whose_bodies_are_withheld_cannot_starve_a_small_queue(small_ckpt):
    server = ServeProcess("--model", str(small_ckpt), "--max-queue", "4")
    try:
        starve(server.port, 4)
    finally:
        server.stop()


def test_nor_on_uvicorns_own_protocol(G, live):
    app = create_app(ServeSettings(max_queue=4), generators={"g": G})
    with live(app) as server:  # uvicorn's own protocol, without gan-serve's head deadline
        starve(server.port, 4)
    assert app.state.serve.entering == 0


def test_a_request_whose_body_is_there_counts_until_it_is_seated(client, monkeypatch):
    state = client.app.state.serve
    _, batcher = next(iter(state.models.values()))
    entering: list[int] = []
    admit = batcher.admit

    def spy(n: int) -> Seat:
        entering.append(state.entering)
        return admit(n)

    monkeypatch.setattr(batcher, "admit", spy)
    assert client.post("/generate", json={"seed": 1, "n": 1}).status_code == 200
    assert entering == [1] and state.entering == 0  # counted through the body limit's reading


def test_an_entry_stops_counting_at_a_read_its_body_cannot_answer():
    async def scenario() -> None:
        state = ServeState(ServeSettings(), Metrics())
        whole, withheld = Entry(state), Entry(state)
        arrived = asyncio.Event()

        async def ready() -> dict:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def later() -> dict:
            await arrived.wait()
            return await ready()

        assert state.entering == 2
        await whole.watch(ready)()
        read = asyncio.ensure_future(withheld.watch(later)())
        for _ in range(3):
            await asyncio.sleep(0)
        assert state.entering == 1 and whole.open and not withheld.open
        arrived.set()
        await read
        assert state.entering == 1  # a late body does not count again: the batcher decides then
        whole.leave()
        assert state.entering == 0

    asyncio.run(scenario())
