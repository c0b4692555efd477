"""POST /project: the CLI's bytes from an uploaded image, the bundled model served from its ONNX
export, and 4xx (never 500) for bad uploads, options and models."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

import gan_serve
from gan_serve.cli import app as cli_app
from gan_serve.http import ServeSettings, create_app
from tests.gan_serve.tiny_models import native_dcgan

QUICK = {"steps": 5, "starts": 1, "screen": 4}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return native_dcgan(tmp_path_factory.mktemp("tiny") / "g.safetensors", 8)


def serve(G, **settings) -> TestClient:
    return TestClient(create_app(ServeSettings(**settings), generators={"g": G}))


def png_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def test_answers_the_clis_latent_and_files(tiny, tmp_path):
    G = gan_serve.load(tiny, precision="fp32")
    data = png_of(G.generate([31])[0])
    (tmp_path / "t.png").write_bytes(data)
    res = CliRunner().invoke(cli_app, ["project", str(tmp_path / "t.png"), "-m", str(tiny), "-o",
                                       str(tmp_path / "out"), "--steps", "5", "--starts", "1",
                                       "--screen", "4"])
    assert res.exit_code == 0, res.output
    with serve(G) as client:
        got = client.post("/project", json={"image": base64.b64encode(data).decode(), **QUICK})
    assert got.status_code == 200, got.text
    body = got.json()
    assert base64.b64decode(body["latent_npy"]) == (tmp_path / "out" / "t.npy").read_bytes()
    assert base64.b64decode(body["image"]) == (tmp_path / "out" / "t.png").read_bytes()
    assert base64.b64decode(body["sheet"]) == (tmp_path / "out" / "t-sheet.png").read_bytes()
    assert np.array_equal(np.float32(body["latent"]), np.load(tmp_path / "out" / "t.npy")[0])
    assert body["model"] == G.model_id and body["provenance"]["gan_serve.steps"] == "5"
    assert body["psnr"] == pytest.approx(float(body["provenance"]["gan_serve.psnr"]), abs=0.01)


def test_the_bundled_model_served_from_onnx_projects_with_its_checkpoint():
    G = gan_serve.load("default")
    with serve(G) as client:
        got = client.post("/project", json={"image": base64.b64encode(png_of(G.generate([2])[0])).decode(),
                                            "steps": 1, "starts": 1, "screen": 1})
    assert got.status_code == 200, got.text
    assert got.json()["backend"] == "torch/cpu/fp32" and got.json()["model"] == G.model_id


@pytest.mark.parametrize(("body", "match"), [
    ({"image": "not base64!"}, "not base64 of an image file"),
    ({"image": "été"}, "not base64 of an image file"),
    ({"image": base64.b64encode(b"text").decode()}, "not an image Pillow can read"),
    ({"image": "", "steps": -1}, "steps must be an integer"),
    ({"image": "", "starts": 5, "screen": 4}, "cannot exceed screen"),
    ({"image": "", "steps": "5"}, "steps"),
    ({"image": "", "features": True}, "no discriminator"),
    ({"image": "", "model": "other"}, "unknown model"),
])
def test_bad_requests_are_4xx(tiny, body, match):
    with serve(gan_serve.load(tiny)) as client:
        got = client.post("/project", json=body)
    assert 400 <= got.status_code < 500, got.text
    assert match in got.json()["error"]


def test_onnx_models_are_422(artifacts):
    with serve(gan_serve.load(artifacts["onnx"])) as client:
        black = base64.b64encode(png_of(np.zeros((8, 8, 3), np.uint8))).decode()
        got = client.post("/project", json={"image": black})
    assert got.status_code == 422 and "needs the generator's gradients" in got.json()["error"]


def test_a_projection_past_the_request_timeout_stops_with_503(tiny):
    G = gan_serve.load(tiny)
    with serve(G, request_timeout_s=0.05) as client:
        got = client.post("/project", json={"image": base64.b64encode(png_of(G.generate([1])[0])).decode(),
                                            "steps": 5000, "starts": 1, "screen": 1})
        assert got.status_code == 503 and "request timeout" in got.json()["error"]
        assert client.post("/project", json={"image": "x", **QUICK}).status_code == 422  # still serving
