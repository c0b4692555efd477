"""Edits and walks over HTTP: the bytes of the CLI, and bad fields as 4xx JSON."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import gan_serve
from gan_serve.commands.cli import app as cli_app
from gan_serve.directions import Directions
from gan_serve.ganspace import find_directions
from gan_serve.http import ServeSettings, create_app

from ..tiny_models import native_dcgan

PINNED = ["--backend", "torch", "--precision", "fp32"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dirs")
    ckpt = native_dcgan(folder / "tiny.safetensors", 8, width=4, z_dim=8)
    G = gan_serve.load(ckpt, backend="torch", precision="fp32")
    dirs = find_directions(G, samples=128, components=3).save(folder / "dirs.safetensors")
    return ckpt, G, dirs


@pytest.fixture(scope="module")
def client(files):
    ckpt, G, dirs = files
    app = create_app(ServeSettings(directions=[str(dirs)]), generators={"tiny": G})
    with TestClient(app) as c:
        yield c


def _cli(files, tmp_path, *args: str, suffix: str = ".png") -> bytes:
    ckpt, _, dirs = files
    out = tmp_path / f"cli{suffix}"
    res = CliRunner().invoke(cli_app, [*args, "-m", str(ckpt), *PINNED, "--directions", str(dirs),
                                       "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out.read_bytes()


def test_generate_with_an_edit_is_the_cli_bytes(client, files, tmp_path):
    r = client.post("/generate", json={"seeds": [3, 4], "edit": {"pc0": 2, "pc1": -1.5}})
    assert r.status_code == 200, r.text
    assert r.headers["X-Gan-Serve-Edit"] == "pc0=+2.0,pc1=-1.5"
    assert r.headers["X-Gan-Serve-Directions"].startswith("dirs@sha256:")
    assert r.content == _cli(files, tmp_path, "generate", "--seeds", "3,4", "--edit", "pc0=2,pc1=-1.5")
    same = client.post("/generate", json={"seeds": [3, 4], "edit": "pc0=+2,pc1=-1.5",
                                          "directions": "dirs"})
    assert same.content == r.content


def test_interpolate_and_walk_are_the_cli_bytes(client, files, tmp_path):
    r = client.post("/interpolate", json={"from": 1, "to": 2, "steps": 3, "edit": "pc2=1"})
    assert r.status_code == 200, r.text
    assert r.content == _cli(files, tmp_path, "interpolate", "--from", "1", "--to", "2", "--steps",
                             "3", "--edit", "pc2=1")
    w = client.post("/walk", json={"seed": 5, "direction": "pc1", "steps": 5, "range": [-2, 2]})
    assert w.status_code == 200, w.text
    assert w.headers["X-Gan-Serve-Walk"] == "pc1=-2.0..2.0"
    assert w.content == _cli(files, tmp_path, "walk", "--seed", "5", "--direction", "pc1", "--steps",
                             "5", "--range", "-2,2")


def test_a_walk_as_a_video_is_the_cli_bytes(client, files, tmp_path):
    from gan_serve.video import read_video

    w = client.post("/walk", json={"seed": 5, "direction": "pc0", "steps": 4, "format": "mp4",
                                   "fps": 8})
    assert w.status_code == 200, w.text
    assert w.headers["content-type"] == "video/mp4"
    assert w.content == _cli(files, tmp_path, "walk", "--seed", "5", "--direction", "pc0", "--steps",
                             "4", "--fps", "8", suffix=".mp4")
    frames, meta = read_video(w.content)
    assert frames.shape[0] == 4 and meta["gan_serve.walk"] == "pc0=-3.0..3.0"


@pytest.mark.parametrize("path, body, message", [
    ("/generate", {"edit": "zz=1"}, "unknown direction 'zz'"),
    ("/generate", {"edit": "pc0=1e9"}, "within +-50"),
    ("/generate", {"edit": {"pc0": 1}, "directions": "other"}, "unknown directions 'other'"),
    ("/generate", {"directions": "dirs"}, "without an edit"),
    ("/generate", {"edit": "pc0=1", "layout": "zip"}, "cannot be combined with layout zip"),
    ("/walk", {"direction": "pc0", "range": [1, 1]}, "LOW,HIGH"),
    ("/walk", {"direction": "pc9"}, "unknown direction 'pc9'"),
    ("/walk", {"direction": "pc0", "steps": 1}, "steps"),
])
def test_bad_edits_are_422(client, path, body, message):
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]


def test_layout_npy_saves_the_edited_latents_as_the_cli_does(client, files, tmp_path):
    r = client.post("/generate", json={"seeds": [3, 4], "edit": "pc0=2", "layout": "npy"})
    assert r.status_code == 200, r.text
    assert r.headers["X-Gan-Serve-Edit"] == "pc0=+2.0"
    ckpt, _, dirs = files
    res = CliRunner().invoke(cli_app, ["generate", "--seeds", "3,4", "-m", str(ckpt), *PINNED,
                                       "--directions", str(dirs), "--edit", "pc0=2",
                                       "--latents-out", str(tmp_path / "z.npy")])
    assert res.exit_code == 0, res.output
    assert r.content == (tmp_path / "z.npy").read_bytes()


def test_get_directions_lists_the_served_files_with_their_scores(client, files):
    dirs = Directions.load(files[2])
    r = client.get("/directions")
    assert r.status_code == 200, r.text
    assert r.json() == [{"name": "dirs", "directions_id": dirs.id, "method": "ganspace", "z_dim": 8,
                         "directions": [{"name": n, "score": s}
                                        for n, s in zip(dirs.names, dirs.scores, strict=True)]}]
    assert [d["name"] for d in r.json()[0]["directions"]] == ["pc0", "pc1", "pc2"]
    edit = client.post("/generate", json={"seeds": [3], "edit": "pc1=2"})
    assert edit.headers["X-Gan-Serve-Directions"] == r.json()[0]["directions_id"]


def test_a_server_without_directions_says_how_to_add_them(files):
    with TestClient(create_app(ServeSettings(), generators={"tiny": files[1]})) as c:
        r = c.post("/generate", json={"edit": "pc0=1"})
        assert c.get("/directions").json() == []  # the page hides its sliders
    assert r.status_code == 422 and "--directions" in r.json()["error"]


def test_directions_for_another_z_dim_stop_the_server_before_it_starts(files, tmp_path):
    other = gan_serve.load(native_dcgan(tmp_path / "z4.safetensors", 8, width=4, z_dim=4))
    from gan_serve.errors import InputError
    from gan_serve.http.app import load_directions

    with pytest.raises(InputError, match="for z_dim 8; this model's z_dim is 4"):
        load_directions(ServeSettings(directions=[str(files[2])]), {"z4": other})
