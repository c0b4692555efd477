"""Over HTTP: the output budget, the formats' size limits, hostile .npy bodies and JSON depth are
422 with one line, before any image is generated."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

import gan_serve
from gan_serve.errors import InputError
from gan_serve.http import ServeSettings, create_app
from gan_serve.request import DEFAULT_LIMITS
from tests.gan_serve.tiny_models import native_dcgan


class Counting:
    """A generator whose forward passes are counted, not run (blank images of its size): these
    tests only need to know that no pass came after the warm-up."""

    def __init__(self, G: object) -> None:
        self._G, self.passes = G, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._G, name)

    def synthesize(self, z, progress=None):
        self.passes += 1
        return np.zeros((len(z), self.img_resolution, self.img_resolution, self.channels), np.uint8)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = native_dcgan(tmp_path_factory.mktemp("big") / "big1024.safetensors", 1024)
    return Counting(gan_serve.load(path, backend="torch", precision="fp32"))


def refused(c: TestClient, route: str, body: object, message: str) -> None:
    r = c.post(route, json=body) if not isinstance(body, bytes) else c.post(
        route, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and message in r.json()["error"], r.text
    assert "\n" not in r.json()["error"]


def test_the_budget_and_format_limits_are_422_before_any_pass(big, G):
    small = Counting(G)
    app = create_app(ServeSettings(), generators={"big": big, "small": small})
    with TestClient(app) as c:
        for route, body in (("/generate", {"n": 64}), ("/generate", {"n": 64, "layout": "zip"}),
                            ("/interpolate", {"seeds": [1, 2], "steps": 64, "format": "gif"})):
            refused(c, route, {**body, "model": "big"}, "64 images of 1024x1024 would be 67,108,864 "
                    "pixels; the output budget is 33,554,432 pixels per request")
        refused(c, "/generate", {"n": 32, "model": "big"}, "a 6,158x6,158 grid would be")
        refused(c, "/generate", {"n": 300, "nrow": 300, "format": "webp", "model": "small"},
                "the grid would be 19,802x68 pixels; webp allows at most 16,383 a side")
        refused(c, "/interpolate", {"seeds": [1, 2], "steps": 1024, "format": "jpeg", "model": "small"},
                "the strip would be 67,586x68 pixels; jpeg allows at most 65,500 a side")
        refused(c, "/interpolate", {"seeds": [1, 2], "format": "gif", "duration_ms": 0, "model": "small"},
                "frame duration must be 10..10000 ms, got 0")
        assert big.passes == 1 and small.passes == 1  # the warm-ups only
        assert c.post("/generate", json={"n": 1, "model": "small"}).status_code == 200


def test_a_server_may_lower_the_budget_never_raise_it(big, monkeypatch):
    app = create_app(ServeSettings(max_pixels=1024 * 1024), generators={"big": big})
    with TestClient(app) as c:
        refused(c, "/generate", {"n": 2}, "the output budget is 1,048,576 pixels per request")
    monkeypatch.setenv("GAN_SERVE_MAX_PIXELS", "5000")
    assert ServeSettings().limits.max_pixels == 5000
    for bad in (DEFAULT_LIMITS.max_pixels + 1, 0):
        with pytest.raises(ValueError, match="max_pixels"):
            ServeSettings(max_pixels=bad)


def test_hostile_npy_bodies_and_deep_json_are_422(client):
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 100), np.float32))
    raw = buf.getvalue()
    for lie in (b"(True, 100)", b"(2, -100)", b"(0, 100)", b"(2, 1, 50)"):
        hostile = raw.replace(b"(2, 100),", lie + b",", 1)
        refused(client, "/interpolate", {"latents": base64.b64encode(hostile).decode()},
                "latents: not base64 of a .npy file (it declares float32 values of shape")
    assert client.post("/interpolate", json={"latents": base64.b64encode(raw).decode()}).status_code == 200
    refused(client, "/interpolate", {"latents": base64.b64encode(raw + b"\0").decode()},
            "declares 800 bytes of data, but 801 follow it")
    deep: object = [1, 2]
    for _ in range(16):
        deep = [deep]
    refused(client, "/interpolate", {"seeds": deep}, "body: JSON nested deeper than 16 levels")
    refused(client, "/generate", {"seeds": {"a": deep}}, "JSON nested deeper than 16 levels")
    refused(client, "/generate", json.dumps({"seeds": deep}).encode(), "nested deeper")
    refused(client, "/generate", b'{"seeds": ' + b"[" * 3000 + b"]" * 3000 + b"}", "nested")


def test_json_depth_walks_without_recursion():
    from gan_serve.request import check_json_depth

    deep: object = 0
    for _ in range(100_000):  # far past the recursion limit
        deep = {"k": [deep]}
    with pytest.raises(InputError, match="nested deeper than 16 levels"):
        check_json_depth(deep)
    shallow = {"latents": [[0.0] * 100] * 2, "seeds": [1, 2]}
    assert check_json_depth(shallow) is shallow
