"""POST /interpolate with format mp4/webm: video/mp4 and video/webm, the CLI's bytes, one-line 422s."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gan_serve.http import ServeSettings, create_app
from gan_serve.video import read_video
from tests.gan_serve.http.conftest import cli_file


@pytest.mark.parametrize(("fmt", "media"), [("mp4", "video/mp4"), ("webm", "video/webm")])
def test_a_video_answers_its_media_type_and_the_clis_bytes(client, G, small_ckpt, tmp_path, fmt, media):
    body = {"seeds": [3, 17], "steps": 6, "format": fmt, "fps": 12, "quality": 20, "repeat": 2}
    r = client.post("/interpolate", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media and r.headers["x-seeds"] == "3,17"
    assert r.headers["x-gan-serve-fps"] == "12" and r.headers["x-gan-serve-quality"] == "20"
    assert r.content == cli_file(small_ckpt, tmp_path, "interpolate", "--from", "3", "--to", "17",
                                 "--steps", "6", "--fps", "12", "--quality", "20", "--repeat", "2",
                                 name=f"walk.{fmt}")
    frames, meta = read_video(r.content)
    assert frames.shape == (12, 64, 64, 3) and meta["gan_serve.model"] == G.model_id
    path = G.interpolate([3, 17], steps=6)
    assert min(10 * np.log10(255**2 / np.mean((f.astype(float) - p) ** 2))
               for f, p in zip(frames[6:], path, strict=True)) >= 30


@pytest.mark.parametrize(("body", "match"), [
    ({"format": "mp4", "fps": 0}, "fps must be an integer from 1 to 120, got 0"),
    ({"format": "webm", "quality": 99}, "quality must be an integer from 0 to 51"),
    ({"format": "mp4", "scale": 0}, "scale must be an integer from 1 to 8"),
    ({"format": "mp4", "animate": False}, "never a strip"),
    ({"format": "png", "fps": 10}, "fps: only for videos"),
    ({"format": "mp4", "fps": "10"}, "fps: Input should be a valid integer"),
    ({"format": "mp4", "steps": 32, "repeat": 100}, "the output budget is"),
    ({"format": "avi"}, "format: Input should be"),
])
def test_bad_video_fields_are_a_422_with_one_line(client, body, match):
    r = client.post("/interpolate", json={"seeds": [1, 2], **body})
    assert r.status_code == 422, r.text
    assert match in r.json()["error"]


def test_a_lowered_output_budget_bounds_video_frames_times_pixels(G):
    app = create_app(ServeSettings(max_pixels=8 * 64 * 64 * 4), generators={"g": G})
    with TestClient(app) as c:
        assert c.post("/interpolate", json={"seeds": [1, 2], "steps": 8, "format": "mp4"}).status_code == 200
        r = c.post("/interpolate", json={"seeds": [1, 2], "steps": 8, "format": "mp4", "repeat": 2})
        assert r.status_code == 422 and "16 video frames of 128x128" in r.json()["error"]


def test_a_server_without_the_video_extra_says_so_in_one_line(client, monkeypatch):
    from gan_serve import extras

    real = extras._importable
    monkeypatch.setattr(extras, "_importable", lambda module: module != "av" and real(module))
    r = client.post("/interpolate", json={"seeds": [1, 2], "format": "webm"})
    assert r.status_code == 400
    assert r.json()["error"] == ("writing or reading a video (.mp4, .webm) needs av (the video extra): "
                                 + extras.install_command("video"))
    assert client.post("/interpolate", json={"seeds": [1, 2], "format": "gif"}).status_code == 200
    assert [m["video"] for m in client.get("/models").json()] == [False]  # the page hides its button
