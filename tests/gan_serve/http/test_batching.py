"""Dynamic batching, backpressure and timeouts on a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import base64
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from gan_serve.http import ServeSettings, create_app
from gan_serve.images import encode_image
from tests.gan_serve.http.conftest import Slow


def batch_histogram(metrics: str) -> tuple[float, float]:
    """(observations with batch size <= 1, all observations) from /metrics."""
    ones = float(re.search(r'gan_serve_batch_size_bucket\{le="1.0",model="g"\} (\S+)', metrics).group(1))
    total = float(re.search(r'gan_serve_batch_size_count\{model="g"\} (\S+)', metrics).group(1))
    return ones, total


def test_concurrent_requests_share_forward_passes_and_stay_correct(G, live):
    app = create_app(ServeSettings(max_delay_ms=100, max_batch=64), generators={"g": Slow(G, 0.05)})
    with live(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        def one(seed: int) -> tuple[int, bytes]:
            return seed, http.post("/generate", json={"seed": seed, "n": 1, "layout": "json"}).content

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, range(100, 112)))
        for seed, body in results:
            item = httpx.Response(200, content=body).json()["images"][0]
            assert item["seed"] == seed
            expected = encode_image(G.generate([seed])[0], "png", G.provenance([seed], 1.0))
            assert base64.b64decode(item["image"]) == expected
        ones, total = batch_histogram(http.get("/metrics").text)
        assert total < 12 and ones < total, (ones, total)  # some forward pass merged requests


def test_a_request_larger_than_the_batch_is_chunked(G, live):
    app = create_app(ServeSettings(max_batch=8, max_n=64), generators={"g": G})
    with live(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        body = http.post("/generate", json={"seed": 0, "n": 20, "layout": "json"}).json()
        assert [i["seed"] for i in body["images"]] == list(range(20))
        metrics = http.get("/metrics").text
        assert 'gan_serve_batch_size_count{model="g"} 3.0' in metrics  # 8 + 8 + 4


def test_overload_is_answered_with_429_at_once_and_the_server_recovers(G, live):
    app = create_app(ServeSettings(max_queue=4, max_batch=2, max_delay_ms=0),
                     generators={"g": Slow(G, 0.3)})
    with live(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(lambda s: http.post("/generate", json={"seed": s, "n": 2}), range(10)))
        codes = [r.status_code for r in responses]
        assert 429 in codes and 200 in codes and set(codes) <= {200, 429}, codes
        busy = next(r for r in responses if r.status_code == 429)
        assert int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["error"]
        assert http.get("/healthz").status_code == 200
        assert http.post("/generate", json={"seed": 1, "n": 1}).status_code == 200


def test_request_timeout_is_503_and_the_server_keeps_serving(G, live):
    app = create_app(ServeSettings(request_timeout_s=0.1), generators={"g": Slow(G, 0.5)})
    with live(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/generate", json={"n": 1})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "timed out" in r.json()["error"]
        assert http.get("/readyz").status_code == 200


def test_graceful_shutdown_finishes_in_flight_requests(G, live):
    app = create_app(ServeSettings(), generators={"g": Slow(G, 0.5)})
    server = live(app)
    with server, httpx.Client(base_url=server.url, timeout=30) as http, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(http.post, "/generate", json={"seed": 3, "n": 1})
        time.sleep(0.2)  # the request is now inside the forward pass
        server.server.should_exit = True  # what SIGTERM does
        response = pending.result()
    assert response.status_code == 200 and response.headers["x-seeds"] == "3"
