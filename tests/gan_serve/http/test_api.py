"""Every endpoint through the real app, and every bad input answered with a JSON 4xx."""

from __future__ import annotations

import base64
import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gan_serve.cli import app as cli_app
from gan_serve.http import ServeSettings, create_app
from gan_serve.images import read_metadata


def cli_bytes(ckpt, tmp_path, *args: str, suffix: str = ".png") -> bytes:
    out = tmp_path / f"cli{suffix}"
    res = CliRunner().invoke(cli_app, ["generate", "-m", str(ckpt), *args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out.read_bytes()


def test_health_ready_models_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "models": ["netG_epoch_24"]}
    (info,) = client.get("/models").json()
    assert info["name"] == "netG_epoch_24" and info["z_dim"] == 100 and info["img_resolution"] == 64
    assert info["backend"] == "torch/cpu/fp32" and info["precision"] == "fp32"
    client.post("/generate", json={"seed": 1, "n": 2})
    text = client.get("/metrics").text
    assert 'gan_serve_requests_total{route="/generate",status="200"} 1.0' in text
    assert 'gan_serve_images_generated_total{model="netG_epoch_24"} 2.0' in text
    for name in ("gan_serve_queue_depth", "gan_serve_batch_size_bucket", "gan_serve_queue_seconds",
                 "gan_serve_compute_seconds"):
        assert name in text


def test_generate_grid_is_byte_identical_to_the_cli(client, small_ckpt, tmp_path):
    r = client.post("/generate", json={"seed": 42, "n": 16})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-seeds"] == "42-57" and r.headers["x-backend"] == "torch/cpu/fp32"
    assert r.content == cli_bytes(small_ckpt, tmp_path, "--seed", "42", "--n", "16")
    r2 = client.post("/generate", json={"seeds": "3-5,100", "truncation": 0.7, "nrow": 2, "format": "webp"})
    assert r2.content == cli_bytes(small_ckpt, tmp_path, "--seeds", "3-5,100", "--truncation", "0.7",
                                   "--nrow", "2", suffix=".webp")


def test_zip_layout_holds_one_file_per_seed_like_individual(client, small_ckpt, tmp_path):
    r = client.post("/generate", json={"seeds": [7, 9], "layout": "zip"})
    assert r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert zf.namelist() == ["seed0007.png", "seed0009.png"]
    res = CliRunner().invoke(cli_app, ["generate", "-m", str(small_ckpt), "--seeds", "7,9",
                                       "--individual", str(tmp_path / "ind")])
    assert res.exit_code == 0
    assert zf.read("seed0009.png") == (tmp_path / "ind" / "seed0009.png").read_bytes()
    assert client.post("/generate", json={"seeds": [7, 9], "layout": "zip"}).content == r.content


def test_json_layout(client, G):
    body = client.post("/generate", json={"seed": 5, "n": 3, "layout": "json"}).json()
    assert body["seeds"] == [5, 6, 7] and body["backend"] == "torch/cpu/fp32"
    im = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"][1]["image"]))))
    assert np.array_equal(im, G.generate([6])[0])


def test_interpolate_strip_and_animation(client, G):
    r = client.post("/interpolate", json={"seeds": [3, 17], "steps": 4, "format": "png"})
    strip = np.asarray(Image.open(io.BytesIO(r.content)))
    assert strip.shape == (68, 4 * 66 + 2, 3)
    assert np.array_equal(strip[2:66, 2:66], G.generate([3])[0])
    assert read_metadata(r.content)["gan_serve.method"] == "slerp"
    gif = client.post("/interpolate", json={"seeds": "3,17,42", "steps": 5, "loop": True})
    assert gif.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(gif.content)).n_frames == 12


BAD_GENERATE = [
    ({"n": 0}, "n must be an integer from 1 to 64"),
    ({"n": 65}, "n must be an integer from 1 to 64"),
    ({"seed": -1}, "outside [0, 4294967295]"),
    ({"seed": 4294967295, "n": 2}, "run past"),
    ({"seeds": "1-x"}, "malformed seed list"),
    ({"seeds": [1, 2], "seed": 3}, "not both"),
    ({"seeds": []}, "no seeds given"),
    ({"truncation": 3}, "psi must be in [0.0, 2.0]"),
    ({"format": "bmp"}, "format"),
    ({"layout": "pdf"}, "layout"),
    ({"nrow": 0}, "nrow"),
    ({"sed": 1}, "sed"),
    ({"seed": "abc"}, "seed"),
]


@pytest.mark.parametrize("body,match", BAD_GENERATE)
def test_generate_bad_input_is_422_json(client, body, match):
    r = client.post("/generate", json=body)
    assert r.status_code == 422 and match in r.json()["error"], r.text


@pytest.mark.parametrize("body,match", [
    ({"seeds": [3]}, "at least two"),
    ({"seeds": [3, 4], "steps": 1}, "steps must be from 2 to 32"),
    ({"seeds": [3, 4], "steps": 33}, "steps must be from 2 to 32"),
    ({"seeds": [3, 4], "method": "cubic"}, "method"),
    ({"seeds": [3, 4], "format": "gif", "animate": False}, "unknown format 'gif'"),
    ({"seeds": "0-40", "steps": 3}, "the number of frames must be an integer from 1 to 64"),
    ({}, "seeds"),
])
def test_interpolate_bad_input_is_422_json(client, body, match):
    r = client.post("/interpolate", json=body)
    assert r.status_code == 422 and match in r.json()["error"], r.text


def test_malformed_json_unknown_model_and_big_body(client):
    r = client.post("/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]
    r = client.post("/generate", json={"model": "nope"})
    assert r.status_code == 404 and r.json()["error"] == "unknown model 'nope'; loaded: netG_epoch_24"
    big = b"[" + b"1," * 40000 + b"1]"
    r = client.post("/generate", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "request body over" in r.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_api_key_on_every_route_but_health(G, monkeypatch):
    monkeypatch.setenv("TEST_GAN_KEY", "s3cret")
    from fastapi.testclient import TestClient

    app = create_app(ServeSettings(api_key_env="TEST_GAN_KEY"), generators={"g": G})
    with TestClient(app) as c:
        for method, path in (("post", "/generate"), ("post", "/interpolate"), ("get", "/models"),
                             ("get", "/metrics")):
            r = c.post(path, json={"seeds": [1, 2]}) if method == "post" else c.get(path)
            assert r.status_code == 401 and "Bearer" in r.json()["error"], path
        wrong = c.post("/generate", json={"n": 1}, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = c.post("/generate", json={"n": 1}, headers={"authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_api_key_env_must_be_set(G, monkeypatch):
    monkeypatch.delenv("UNSET_GAN_KEY", raising=False)
    with pytest.raises(Exception, match="UNSET_GAN_KEY"):
        create_app(ServeSettings(api_key_env="UNSET_GAN_KEY"), generators={"g": G})


def test_openapi_documents_the_models(client):
    spec = client.get("/openapi.json").json()
    assert {"/generate", "/interpolate", "/models", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "GenerateRequest" in spec["components"]["schemas"]


def test_page_is_served_without_a_cdn(client):
    html = client.get("/").text
    assert '<script src="/static/app.js">' in html
    assert "http://" not in html and "https://" not in html
    assert client.get("/static/app.js").status_code == 200


def test_cors_is_off_unless_configured(G):
    from fastapi.testclient import TestClient

    origin = {"origin": "https://example.org"}
    with TestClient(create_app(ServeSettings(), generators={"g": G})) as c:
        assert "access-control-allow-origin" not in c.get("/models", headers=origin).headers
    app = create_app(ServeSettings(cors_origins=["https://example.org"]), generators={"g": G})
    with TestClient(app) as c:
        allowed = c.get("/models", headers=origin).headers
        assert allowed["access-control-allow-origin"] == "https://example.org"


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("GAN_SERVE_MAX_N", "12")
    monkeypatch.setenv("GAN_SERVE_MODELS", '["a.onnx", "default"]')
    s = ServeSettings()
    assert s.max_n == 12 and s.models == ["a.onnx", "default"]
