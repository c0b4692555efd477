"""A real app on a small generator; real uvicorn servers on 127.0.0.1 where the network matters."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import gan_serve
from gan_serve.commands.cli import app as cli_app
from gan_serve.http import ServeSettings, create_app

REPO = Path(__file__).resolve().parents[3]


def cli_file(ckpt, tmp_path, command: str, *args: str, name: str = "cli.png") -> bytes:
    """The bytes `gan-serve COMMAND -m CKPT ARGS -o FILE` writes."""
    out = tmp_path / name
    res = CliRunner().invoke(cli_app, [command, "-m", str(ckpt), *args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out.read_bytes()


class Slow:
    """A generator whose forward pass takes `delay` seconds more (to fill queues on purpose)."""

    def __init__(self, G: object, delay: float) -> None:
        self._G, self._delay = G, delay

    def __getattr__(self, name: str) -> object:
        return getattr(self._G, name)

    def synthesize(self, z, progress=None):
        time.sleep(self._delay)
        return self._G.synthesize(z, progress)


@pytest.fixture(scope="session")
def G(small_ckpt):
    return gan_serve.load(small_ckpt)


@pytest.fixture()
def client(G) -> Iterator[TestClient]:
    app = create_app(ServeSettings(max_n=64, max_steps=32, max_keys=64),
                     generators={"netG_epoch_24": G})
    with TestClient(app) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, alive: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and alive():
        try:
            if httpx2.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server at {url} did not become ready")


class LiveServer:
    """uvicorn serving an app object on 127.0.0.1 in a thread (to inject slow models); `options`
    go to uvicorn.Config (the protocol of gan_serve.http.guard.uvicorn_options, for one)."""

    def __init__(self, app: object, **options: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=5, **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_ready(self.url, self.thread.is_alive, 30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture()
def live():
    """Factory: `with live(app) as server: ...`."""
    return LiveServer


class ServeProcess:
    """`gan-serve serve` as its own process on 127.0.0.1, stopped with SIGTERM."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "gan_serve", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})},
                                     preexec_fn=preexec_fn,  # e.g. a lower open-files limit
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_ready(self.url, lambda: self.proc.poll() is None)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"gan-serve serve failed:\n{self.output}") from None

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.output = self.proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.output = self.proc.communicate()[0]
        return self.proc.returncode


@pytest.fixture(scope="session")
def serve_process(small_ckpt) -> Iterator[ServeProcess]:
    """One real `gan-serve serve` process for the session, serving the small checkpoint."""
    server = ServeProcess("--model", str(small_ckpt), "--max-n", "64")
    yield server
    server.stop()
