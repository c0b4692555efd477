"""Dynamic batching, fairness, backpressure, timeouts and shutdown on real uvicorn servers."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gan_serve.backends import micro_batch_for
from gan_serve.http import ServeSettings, create_app
from gan_serve.http.batcher import Batcher
from gan_serve.http.metrics import Metrics
from gan_serve.images import encode_image
from gan_serve.request import SeedRequest
from tests.gan_serve.http.conftest import Slow, cli_file
from tests.gan_serve.tiny_models import RowWise, stand_in


def metric(text: str, name: str, model: str = "g") -> float:
    return float(re.search(rf'^{name}\{{(?:le="[^"]*",)?model="{model}"\}} (\S+)$', text, re.M).group(1))


def test_concurrent_requests_share_forward_passes_and_each_image_is_its_own(G, live):
    app = create_app(ServeSettings(max_delay_ms=100, max_batch=64), generators={"g": Slow(G, 0.05)})
    with live(app) as server, httpx2.Client(base_url=server.url, timeout=30) as http:
        def one(seed: int) -> dict:
            return http.post("/generate", json={"seeds": [seed, seed + 50], "layout": "json"}).json()

        with ThreadPoolExecutor(12) as pool:
            bodies = list(pool.map(one, range(100, 112)))
        text = http.get("/metrics").text
    for seed, body in zip(range(100, 112), bodies, strict=True):
        for s, item in zip((seed, seed + 50), body["images"], strict=True):
            # the bytes of a seed's image alone: its batch companions changed nothing
            assert item["seed"] == s
            assert base64.b64decode(item["image"]) == encode_image(G.generate([s])[0], "png",
                                                                   G.provenance([s], 1.0))
    passes = metric(text, "gan_serve_batch_size_count")
    assert metric(text, "gan_serve_batch_size_sum") == 24
    assert passes < 12, passes  # fewer forward passes than requests: requests were merged


def test_grids_served_while_batched_with_other_requests_are_the_cli_bytes(G, small_ckpt, live, tmp_path):
    app = create_app(ServeSettings(max_delay_ms=100, max_batch=64), generators={"g": Slow(G, 0.05)})
    requests = [{"seed": 10 * i, "n": 1 + i % 4, "truncation": 0.5 + 0.25 * (i % 3)} for i in range(12)]
    with live(app) as server, httpx2.Client(base_url=server.url, timeout=30) as http:
        with ThreadPoolExecutor(12) as pool:
            grids = list(pool.map(lambda body: http.post("/generate", json=body), requests))
        text = http.get("/metrics").text
    assert metric(text, "gan_serve_batch_size_count") < 12  # merged with other requests' images
    for i in (0, 5, 10):  # n = 1, 2, 3 at psi 0.5, 1.25, 0.75
        body = requests[i]
        assert grids[i].status_code == 200
        assert grids[i].content == cli_file(small_ckpt, tmp_path, "generate", "--seed", str(body["seed"]),
                                            "--n", str(body["n"]), "--truncation", str(body["truncation"]))


def test_a_request_larger_than_the_batch_is_chunked(G, live):
    app = create_app(ServeSettings(max_batch=8, max_n=64), generators={"g": G})
    with live(app) as server, httpx2.Client(base_url=server.url, timeout=30) as http:
        body = http.post("/generate", json={"seed": 0, "n": 20, "layout": "json"}).json()
        assert [i["seed"] for i in body["images"]] == list(range(20))
        text = http.get("/metrics").text
    assert metric(text, "gan_serve_batch_size_count") == 3  # 8 + 8 + 4


class Recorder:
    """A generator stand-in that logs the first latent value of every row it is given."""

    z_dim = 4

    def __init__(self) -> None:
        self.passes: list[list[float]] = []
        self.started = threading.Event()

    def synthesize(self, z: np.ndarray) -> np.ndarray:
        self.passes.append(z[:, 0].tolist())
        self.started.set()
        time.sleep(0.02)
        return np.repeat(z[:, :1, None, None], 2, axis=1).astype(np.uint8)  # (N, 2, 1, 1)


def test_a_big_request_does_not_starve_small_ones():
    async def scenario(rec: Recorder) -> None:
        batcher = Batcher(rec, "g", max_batch=8, max_delay_ms=0, max_queue=1000, metrics=Metrics())
        batcher.start()
        big = asyncio.ensure_future(batcher.submit(np.ones((64, 4), np.float32)))
        await asyncio.to_thread(rec.started.wait)  # the first pass (8 of the 64) is under way
        small = await batcher.submit(np.full((1, 4), 2, np.float32))
        assert small[:, 0, 0, 0].tolist() == [2] and len(await big) == 64
        await batcher.stop()

    rec = Recorder()
    asyncio.run(scenario(rec))
    assert rec.passes[0] == [1] * 8
    assert rec.passes[1] == [2] + [1] * 7  # the small request went first in the very next pass
    assert sum(len(p) for p in rec.passes) == 65


def test_a_pass_runs_whole_micro_batches_and_the_rest_goes_first_in_the_next():
    class MicroBatch4(Recorder):
        runner = type("Runner", (), {"micro_batch": 4})()

    async def scenario(rec: Recorder) -> None:
        batcher = Batcher(rec, "g", max_batch=64, max_delay_ms=0, max_queue=1000, metrics=Metrics())
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.zeros((1, 4), np.float32)))
        await asyncio.to_thread(rec.started.wait)  # six requests arrive during the first pass
        rest = [asyncio.ensure_future(batcher.submit(np.full((1, 4), i, np.float32))) for i in range(1, 7)]
        await asyncio.gather(first, *rest)
        await batcher.stop()

    rec = MicroBatch4()
    asyncio.run(scenario(rec))
    # 6 waiting images would cost 8 rows in one pass: 4 now, the 2 left over first in the next
    assert rec.passes == [[0], [1, 2, 3, 4], [5, 6]]


def test_a_turn_is_one_micro_batch_of_the_backends_own(G):
    """The batcher's share per ticket comes from the model's runner, or else from the one CPU
    figure in gan_serve.backends: no second value of its own."""
    def share(model: object, max_batch: int = 64) -> int:
        return Batcher(model, "g", max_batch, 0, 10, Metrics()).quantum

    assert share(G) == G.runner.micro_batch == micro_batch_for("cpu", G.img_resolution)
    assert share(Recorder()) == micro_batch_for("cpu")  # a stand-in without a runner
    assert share(G, max_batch=3) == 3


def test_overload_is_answered_with_429_at_once_and_the_server_recovers(G, live):
    app = create_app(ServeSettings(max_queue=4, max_batch=2), generators={"g": Slow(G, 0.3)})
    with live(app) as server, httpx2.Client(base_url=server.url, timeout=30) as http:
        arrived: list[int] = []  # status codes in the order the answers came back

        def post(seed: int) -> httpx2.Response:
            r = http.post("/generate", json={"seed": seed, "n": 2})
            arrived.append(r.status_code)  # list.append is atomic under the GIL
            return r

        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(post, range(10)))
        codes = sorted(r.status_code for r in responses)
        assert 429 in codes and 200 in codes and set(codes) <= {200, 429}, codes
        busy = next(r for r in responses if r.status_code == 429)
        # refused at once, not after waiting in line: a 429 is back before any answer that needed a pass
        assert arrived.index(429) < arrived.index(200), arrived
        assert int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["error"]
        assert http.get("/healthz").status_code == 200
        # a request bigger than the whole queue still runs when nothing else waits
        assert http.post("/generate", json={"seed": 1, "n": 6}).status_code == 200
        text = http.get("/metrics").text
    assert 'gan_serve_requests_total{route="/generate",status="429"}' in text
    assert metric(text, "gan_serve_queue_depth") == 0


def test_a_refused_request_costs_no_latents(G, live, monkeypatch):
    built: list[int] = []
    latents = SeedRequest.latents

    def counted(self, z_dim):
        built.extend(self.seeds)
        return latents(self, z_dim)

    monkeypatch.setattr(SeedRequest, "latents", counted)
    app = create_app(ServeSettings(max_queue=2, max_batch=2), generators={"g": Slow(G, 0.3)})
    with live(app) as server, httpx2.Client(base_url=server.url, timeout=30) as http, \
            ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda s: http.post("/generate", json={"seed": s, "n": 1}), range(16)))
    served = sorted(int(r.headers["x-seeds"]) for r in responses if r.status_code == 200)
    assert any(r.status_code == 429 for r in responses) and served
    assert sorted(built) == served  # admission came before any work: only admitted seeds were built


def test_a_full_queue_still_answers_401_to_a_caller_without_the_key(G, live, monkeypatch):
    monkeypatch.setenv("TEST_GAN_KEY", "s3cret")
    app = create_app(ServeSettings(max_queue=1, max_batch=1, api_key_env="TEST_GAN_KEY"),
                     generators={"g": Slow(G, 0.6)})
    auth = {"Authorization": "Bearer s3cret"}
    with live(app) as server, httpx2.Client(base_url=server.url, timeout=30) as http, \
            ThreadPoolExecutor(1) as pool:
        first = pool.submit(http.post, "/generate", json={"seed": 0, "n": 1}, headers=auth)
        # until the first request holds the only place in the queue (the gauge appears with it)
        while 'gan_serve_queue_depth{model="g"} 1.0' not in http.get("/metrics", headers=auth).text:
            time.sleep(0.01)
        assert http.post("/generate", json={"seed": 1, "n": 1}).status_code == 401
        assert http.post("/interpolate", json={"seeds": [1, 2]}, headers=auth).status_code == 429
        busy = http.post("/generate", json={"seed": 1, "n": 1}, headers=auth)
        assert busy.status_code == 429 and "busy" in busy.json()["error"]
        assert first.result().status_code == 200
        text = http.get("/metrics", headers=auth).text
    assert 'gan_serve_requests_total{route="/interpolate",status="429"} 1.0' in text


def test_request_timeout_is_503_and_drops_the_queued_work(G, live):
    app = create_app(ServeSettings(request_timeout_s=0.2, max_batch=1), generators={"g": Slow(G, 0.3)})
    with live(app) as server, httpx2.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/generate", json={"seed": 0, "n": 4})  # 4 passes of 0.3 s: cannot make it
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "timed out" in r.json()["error"]
        time.sleep(0.4)  # the pass under way finishes; the 3 not started are dropped
        text = http.get("/metrics").text
        assert metric(text, "gan_serve_queue_depth") == 0
        assert metric(text, "gan_serve_batch_size_count") == 1
        assert http.get("/readyz").status_code == 200


def test_graceful_shutdown_finishes_in_flight_requests(G, live):
    app = create_app(ServeSettings(), generators={"g": Slow(G, 0.5)})
    server = live(app)
    with server, httpx2.Client(base_url=server.url, timeout=30) as http, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(http.post, "/generate", json={"seed": 3, "n": 1})
        time.sleep(0.2)  # the request is now inside the forward pass
        server.server.should_exit = True  # what SIGTERM does
        response = pending.result()
    assert response.status_code == 200 and response.headers["x-seeds"] == "3"


@pytest.mark.parametrize(("drift", "rows"), [(0, 1), (16, 16)])
def test_a_lone_request_runs_the_smallest_pass_the_probe_at_load_allowed(drift, rows):
    # drift 16: every pass below 16 rows gives other float bits, so the probe refuses them all
    runner = RowWise(drift=drift)
    with TestClient(create_app(ServeSettings(), generators={"g": stand_in(runner)})) as c:
        runner.passes.clear()
        body = c.post("/generate", json={"seed": 5, "n": 1, "layout": "json"}).json()
        text = c.get("/metrics").text
    assert runner.passes == [rows]
    assert metric(text, "gan_serve_batch_size_count") == 1
    png = Image.open(io.BytesIO(base64.b64decode(body["images"][0]["image"])))
    assert np.array_equal(np.asarray(png), stand_in(RowWise()).generate([5])[0])  # a full pass's
