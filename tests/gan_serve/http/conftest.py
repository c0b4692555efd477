"""A real app on a small generator; a real uvicorn server where the network matters."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

import gan_serve
from gan_serve.http import ServeSettings, create_app


class Slow:
    """A generator whose forward pass takes `delay` seconds (to fill queues on purpose)."""

    def __init__(self, G: object, delay: float) -> None:
        self._G, self._delay = G, delay

    def __getattr__(self, name: str) -> object:
        return getattr(self._G, name)

    def synthesize(self, z, progress=None):  # noqa: ANN001, ANN201
        time.sleep(self._delay)
        return self._G.synthesize(z, progress)


@pytest.fixture(scope="session")
def G(small_ckpt):
    return gan_serve.load(small_ckpt)


@pytest.fixture()
def client(G) -> Iterator[TestClient]:
    app = create_app(ServeSettings(max_n=64, max_steps=32), generators={"netG_epoch_24": G})
    with TestClient(app) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a thread; stopped gracefully at the end."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready in 30 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture()
def live():
    """Factory: `with live(app) as server: ...`."""
    return LiveServer
