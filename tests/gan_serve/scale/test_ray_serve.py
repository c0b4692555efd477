"""`serve --ray`: the FastAPI app as a Ray Serve deployment of 2 replicas on a local Ray instance
answers POST /generate with the bytes `gan-serve generate` writes for the same seeds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from gan_serve.http import ServeSettings
from gan_serve.scale.ray_serve import APP_NAME, ReplicaPlan, deploy
from tests.gan_serve.http.conftest import cli_file, free_port

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def replicas(local_ray, onnx_model):
    from ray import serve

    port = free_port()
    deploy(ServeSettings(models=[str(onnx_model)], port=port, max_batch=8),
           ReplicaPlan(min_replicas=2, max_replicas=2, cpus=0.5))
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def test_two_replicas_answer_with_the_cli_bytes(replicas, onnx_model, tmp_path):
    from ray import serve

    states = serve.status().applications[APP_NAME].deployments[APP_NAME].replica_states
    assert states == {"RUNNING": 2}
    want = cli_file(onnx_model, tmp_path, "generate", "--seeds", "3-8", "--psi", "0.7")
    body = {"seeds": "3-8", "truncation": 0.7}
    with ThreadPoolExecutor(8) as pool:  # concurrent: both replicas, batching inside each
        answers = list(pool.map(lambda _: httpx2.post(f"{replicas}/generate", json=body, timeout=60),
                                range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    assert all(r.content == want for r in answers)
    assert answers[0].headers["x-backend"] == "onnx/cpu/fp32"


def test_errors_stay_json_4xx_through_the_proxy(replicas):
    r = httpx2.post(f"{replicas}/generate", json={"seeds": "3-8", "truncation": 5.0}, timeout=60)
    assert r.status_code == 422 and "truncation" in r.json()["error"]
    assert httpx2.get(f"{replicas}/readyz", timeout=60).json()["ready"] is True
