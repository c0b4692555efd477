"""Every endpoint through the real app; the same request gives the CLI's bytes."""

from __future__ import annotations

import base64
import io
import zipfile

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

import gan_serve
from gan_serve.commands.cli import app as cli_app
from gan_serve.http import ServeSettings, create_app
from gan_serve.images import read_metadata
from tests.gan_serve.http.conftest import cli_file


def test_health_ready_models_and_metrics(client, G):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "models": ["netG_epoch_24"]}
    assert client.get("/models").json() == [{
        "name": "netG_epoch_24", "model_id": G.model_id, "architecture": G.spec.describe(),
        "z_dim": 100, "img_resolution": 64, "channels": 3, "backend": G.backend,
        "precision": G.runner.precision, "placeholder": False, "video": True}]
    client.post("/generate", json={"seed": 1, "n": 2})
    client.post("/generate", json={"n": 0})
    text = client.get("/metrics").text
    assert 'gan_serve_requests_total{route="/generate",status="200"} 1.0' in text
    assert 'gan_serve_requests_total{route="/generate",status="422"} 1.0' in text
    assert 'gan_serve_images_generated_total{model="netG_epoch_24"} 2.0' in text
    assert 'gan_serve_queue_depth{model="netG_epoch_24"} 0.0' in text
    for name in ("gan_serve_batch_size_bucket", "gan_serve_queue_seconds_bucket",
                 "gan_serve_compute_seconds_bucket"):
        assert name in text


def test_layout_npy_is_what_generate_latents_out_writes(client, small_ckpt, tmp_path):
    r = client.post("/generate", json={"seeds": [3, 17], "truncation": 0.7, "layout": "npy"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert r.headers["x-seeds"] == "3,17"  # the latents before truncation, as the CLI saves them
    res = CliRunner().invoke(cli_app, ["generate", "-m", str(small_ckpt), "--seeds", "3,17", "--truncation",
                                       "0.7", "--latents-out", str(tmp_path / "z.npy")])
    assert res.exit_code == 0, res.output
    assert r.content == (tmp_path / "z.npy").read_bytes()
    path = client.post("/interpolate", json={"latents": base64.b64encode(r.content).decode(), "steps": 3,
                                             "truncation": 0.7})
    seeds = client.post("/interpolate", json={"seeds": [3, 17], "steps": 3, "truncation": 0.7})
    assert path.status_code == 200, path.text  # interpolate takes them: the same frames as the seeds'
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(path.content))),
                          np.asarray(Image.open(io.BytesIO(seeds.content))))
    ranked = client.post("/generate", json={"seed": 1, "n": 2, "candidates": 4, "layout": "npy"})
    assert ranked.status_code == 422 and "candidates are ranked by their images" in ranked.json()["error"]


def test_a_grid_of_latents_is_the_bytes_of_generate_latents(client, small_ckpt, tmp_path):
    z = np.random.RandomState(5).randn(3, 100).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    r = client.post("/generate", json={"latents": z.tolist(), "truncation": 0.8, "nrow": 2})
    assert r.status_code == 200, r.text
    assert r.content == cli_file(small_ckpt, tmp_path, "generate", "--latents", str(tmp_path / "z.npy"),
                                 "--truncation", "0.8", "--nrow", "2")
    assert read_metadata(r.content)["gan_serve.latents"].startswith("3x100@sha256:")
    npy = base64.b64encode((tmp_path / "z.npy").read_bytes()).decode()
    assert client.post("/generate", json={"latents": npy, "truncation": 0.8, "nrow": 2}).content == r.content
    for extra, word in (({"n": 3}, "takes no n"), ({"layout": "zip"}, "takes no layout zip")):
        bad = client.post("/generate", json={"latents": z.tolist(), **extra})
        assert bad.status_code == 422 and word in bad.json()["error"], bad.text
    wrong = client.post("/generate", json={"latents": [[0.0] * 8]})
    assert wrong.status_code == 422 and "(N, 100)" in wrong.json()["error"]


def test_generate_grid_is_byte_identical_to_the_cli(client, G, small_ckpt, tmp_path):
    r = client.post("/generate", json={"seed": 42, "n": 16})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-seeds"] == "42-57" and r.headers["x-model"] == G.model_id
    assert r.headers["x-backend"] == G.backend and r.headers["x-truncation"] == "1.0"
    assert r.content == cli_file(small_ckpt, tmp_path, "generate", "--seed", "42", "--n", "16")
    assert read_metadata(r.content)["gan_serve.seeds"] == "42-57"
    r2 = client.post("/generate", json={"seeds": "3-5,100", "truncation": 0.7, "nrow": 2, "format": "webp"})
    assert r2.headers["content-type"] == "image/webp"
    assert r2.content == cli_file(small_ckpt, tmp_path, "generate", "--seeds", "3-5,100", "--truncation",
                                  "0.7", "--nrow", "2", name="cli.webp")
    r3 = client.post("/generate", json={"seed": 7, "n": 3, "format": "jpeg"})
    assert r3.content == cli_file(small_ckpt, tmp_path, "generate", "--seed", "7", "--n", "3", name="g.jpg")


def test_zip_layout_holds_one_file_per_seed_like_individual(client, small_ckpt, tmp_path):
    r = client.post("/generate", json={"seeds": [7, 9], "layout": "zip"})
    assert r.headers["content-type"] == "application/zip" and r.headers["x-seeds"] == "7,9"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert zf.namelist() == ["seed0007.png", "seed0009.png"]
    res = CliRunner().invoke(cli_app, ["generate", "-m", str(small_ckpt), "--seeds", "7,9",
                                       "--individual", str(tmp_path / "ind")])
    assert res.exit_code == 0
    assert zf.read("seed0009.png") == (tmp_path / "ind" / "seed0009.png").read_bytes()
    assert client.post("/generate", json={"seeds": [7, 9], "layout": "zip"}).content == r.content


def test_json_layout(client, G):
    body = client.post("/generate", json={"seed": 5, "n": 3, "layout": "json"}).json()
    assert body["seeds"] == [5, 6, 7] and body["model"] == G.model_id and body["truncation"] == 1.0
    assert body["backend"] == G.backend and body["format"] == "png"
    assert [i["seed"] for i in body["images"]] == [5, 6, 7]
    png = base64.b64decode(body["images"][1]["image"])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), G.generate([6])[0])
    assert read_metadata(png)["gan_serve.seeds"] == "6"


def test_interpolate_strip_and_animation_match_the_cli(client, G, small_ckpt, tmp_path):
    r = client.post("/interpolate", json={"seeds": [3, 17], "steps": 5, "format": "png"})
    assert r.headers["content-type"] == "image/png" and r.headers["x-seeds"] == "3,17"
    assert r.content == cli_file(small_ckpt, tmp_path, "interpolate", "--from", "3", "--to", "17",
                                 "--steps", "5")
    strip = np.asarray(Image.open(io.BytesIO(r.content)))
    assert strip.shape == (68, 5 * 66 + 2, 3)
    assert np.array_equal(strip[2:66, 2:66], G.generate([3])[0])  # frame 0 is seed 3's image
    assert read_metadata(r.content)["gan_serve.method"] == "slerp"
    gif = client.post("/interpolate", json={"seeds": "3,17,42", "steps": 4, "loop": True, "method": "lerp",
                                           "format": "gif"})
    assert gif.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(gif.content)).n_frames == 9
    assert gif.content == cli_file(small_ckpt, tmp_path, "interpolate", "--seeds", "3,17,42", "--steps",
                                   "4", "--loop", "--method", "lerp", name="walk.gif")
    webp = client.post("/interpolate", json={"seeds": [1, 2], "steps": 3, "format": "webp", "animate": True})
    assert webp.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(webp.content)).n_frames == 3


def test_the_naive_benchmark_endpoint_serves_the_same_images_within_fp32_tolerance(G):
    app = create_app(ServeSettings(naive_endpoint=True), generators={"g": G})
    with TestClient(app) as c:
        body = {"seed": 11, "n": 5, "truncation": 0.8}
        served, naive = c.post("/generate", json=body), c.post("/generate-naive", json=body)
    assert naive.status_code == 200 and naive.headers["x-seeds"] == served.headers["x-seeds"] == "11-15"
    a, b = (np.asarray(Image.open(io.BytesIO(r.content)), np.int16) for r in (served, naive))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1  # eager fp32 on the 5 latents, unpadded


def test_several_models_are_chosen_by_name(G):
    other = gan_serve.load("default")
    with TestClient(create_app(ServeSettings(), generators={"mine": G, "default": other})) as c:
        assert [m["name"] for m in c.get("/models").json()] == ["mine", "default"]
        assert c.post("/generate", json={"n": 1}).headers["x-model"] == G.model_id  # the first
        r = c.post("/generate", json={"n": 1, "model": "default"})
        assert r.headers["x-model"] == other.model_id and r.headers["x-seeds"] == "0"


def test_openapi_documents_routes_and_models(client):
    spec = client.get("/openapi.json").json()
    assert {"/generate", "/interpolate", "/models", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "/generate-naive" not in spec["paths"]
    assert {"GenerateRequest", "InterpolateRequest", "GenerateJSON", "ModelInfo", "ErrorBody"} <= set(
        spec["components"]["schemas"])
    assert "429" in spec["paths"]["/generate"]["post"]["responses"]
    assert client.get("/docs").status_code == 200


def test_page_and_its_assets_come_from_the_app(client):
    html = client.get("/").text
    assert '<script src="/static/app.js">' in html and "/static/style.css" in html
    for asset in ("/static/app.js", "/static/style.css"):
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text  # no CDN
    assert "https://" not in html and "http://" not in html


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("GAN_SERVE_MAX_N", "12")
    monkeypatch.setenv("GAN_SERVE_MODELS", '["a.onnx", "default"]')
    s = ServeSettings()
    assert s.max_n == 12 and s.models == ["a.onnx", "default"]
    monkeypatch.delenv("GAN_SERVE_MODELS")
    monkeypatch.setenv("GAN_SERVE_MODEL", "g.pth")  # what the other commands read
    assert ServeSettings().models == ["g.pth"]
