"""Slowloris against a real `gan-serve serve` process: trickling heads and bodies are cut off,
connections are capped, and a normal client is served meanwhile."""

from __future__ import annotations

import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import httpx2
import pytest
from fastapi.testclient import TestClient

from gan_serve.http import ServeSettings, create_app

from .conftest import REPO, ServeProcess


@pytest.fixture(scope="module")
def guarded(small_ckpt):
    server = ServeProcess("--model", str(small_ckpt), "--header-timeout", "1", "--body-timeout", "1",
                          "--max-connections", "4")
    yield server
    server.stop()


def closed_by_server(sock: socket.socket) -> bool:
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def test_a_trickling_head_is_cut_off_while_others_are_served(guarded):
    slow = socket.create_connection(("127.0.0.1", guarded.port), timeout=5)
    slow.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\n")
    start, served, cut_after = time.monotonic(), 0, None
    with slow, httpx2.Client(base_url=guarded.url, timeout=10) as normal:
        for i in range(60):  # at most ~12 s
            if closed_by_server(slow):
                cut_after = time.monotonic() - start
                break
            try:
                slow.sendall(f"X-Slow-{i}: 1\r\n".encode())  # one header line at a time
            except OSError:
                cut_after = time.monotonic() - start
                break
            r = normal.post("/generate", json={"n": 1})
            assert r.status_code == 200
            served += 1
            time.sleep(0.2)
    assert cut_after is not None and 1.0 <= cut_after < 4.0, cut_after
    assert served >= 2


def test_a_trickling_body_gets_408(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as slow:
        slow.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"n\": ")
        deadline = time.monotonic() + 4.0  # the 1 s body deadline answers well before the socket's 10 s

        def recv() -> bytes:  # a TimeoutError fails the test: no answer by the deadline
            slow.settimeout(max(deadline - time.monotonic(), 0.001))
            return slow.recv(4096)

        answer = recv()
        while b"\r\n\r\n{" not in answer and (more := recv()):  # head and body may come apart
            answer += more
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request body not received within 1 s" in answer
    assert httpx2.post(f"{guarded.url}/generate", json={"n": 1}).status_code == 200


def test_connections_over_the_cap_get_503_until_idle_ones_are_closed(guarded):
    idle = [socket.create_connection(("127.0.0.1", guarded.port), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)  # let the server accept them
        r = httpx2.get(f"{guarded.url}/healthz", timeout=10)
        assert r.status_code == 503
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # the head deadline closes the idle ones
            if httpx2.get(f"{guarded.url}/healthz", timeout=10).status_code == 200:
                break
            time.sleep(0.2)
        else:
            pytest.fail("idle connections were never closed")
        assert all(closed_by_server(s) for s in idle)
    finally:
        for s in idle:
            s.close()


def test_an_endless_head_sent_fast_is_cut_at_the_byte_cap(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as flood:
        flood.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\n")
        line = b"X-Flood: " + b"a" * 1000 + b"\r\n"
        sent = 0
        try:
            while sent < 4 << 20:  # 4 MB of header lines, well past the 1 MiB cap
                flood.sendall(line * 64)
                sent += len(line) * 64
        except OSError:
            pass  # the server closed the connection while we were still sending
        try:
            answer = flood.recv(4096)
        except ConnectionResetError:
            answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:100]
        assert sent < 4 << 20 or answer.startswith(b"HTTP/1.1 431")
    assert httpx2.post(f"{guarded.url}/generate", json={"n": 1}).status_code == 200


def test_the_key_comes_before_the_body_limit(G, monkeypatch):
    monkeypatch.setenv("TEST_GAN_KEY", "s3cret")
    app = create_app(ServeSettings(api_key_env="TEST_GAN_KEY"), generators={"g": G})
    big = b"{" + b" " * (100 << 10) + b"}"
    chunks = iter([big[: 50 << 10], big[50 << 10 :]])  # no Content-Length: counted as it streams
    with TestClient(app) as c:
        for content in (big, chunks):
            r = c.post("/generate", content=content, headers={"content-type": "application/json"})
            assert r.status_code == 401 and "Bearer" in r.json()["error"], r.text
        r = c.post("/generate", content=big, headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 413 and r.json() == {"error": "request body over 65536 bytes"}
        r = c.post("/generate", content=big, headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401


def open_files(soft: int) -> Callable[[], None]:
    """A preexec_fn that lowers the child's open-files limit (`ulimit -Sn soft`)."""
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    return lower


@pytest.mark.parametrize("soft,cap", [(128, 64), (256, 160), (1024, 512)])
def test_the_default_connection_cap_follows_the_open_files_limit(soft, cap):
    code = ("from gan_serve.http import ServeSettings; s = ServeSettings(); print(s.max_connections); "
            "print(ServeSettings(max_connections=600).connections_note())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, preexec_fn=open_files(soft),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == str(cap)
    assert (out[1] == "None") == (soft == 1024), out  # 600 is more than 128 or 256 files hold


def test_a_wave_past_the_open_files_limit_gets_503s_not_resets(small_ckpt):
    server = ServeProcess("--model", str(small_ckpt), preexec_fn=open_files(128))  # default cap: 64
    wave: list[socket.socket] = []
    try:
        wave += [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(200)]
        with httpx2.Client(base_url=server.url, timeout=10) as normal:
            r = normal.get("/healthz")  # a connection past the cap: refused as it opens
            assert r.status_code == 503 and r.json() == {"error": "too many open connections; retry later"}
        deadline, refused = time.monotonic() + 10, []
        while len(refused) < 200 - 64 and time.monotonic() < deadline:
            refused += [s for s in wave if s not in refused and select.select([s], [], [], 0)[0]]
            time.sleep(0.05)
        assert len(refused) >= 200 - 64  # the others are held, waiting for their heads
        for s in refused:  # each one read whole and closed, none reset
            answer = b"".join(iter(lambda s=s: s.recv(4096), b""))
            assert answer.startswith(b"HTTP/1.1 503 ") and answer.endswith(b"retry later\"}"), answer
        for s in wave:
            s.close()
        assert httpx2.post(f"{server.url}/generate", json={"n": 1}, timeout=10).status_code == 200
    finally:
        for s in wave:
            s.close()
        server.stop()
