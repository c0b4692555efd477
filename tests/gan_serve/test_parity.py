"""The CLI and HTTP are two faces of one request layer: the same request, under the same option
names (aliases included), gives the same bytes from `gan-serve generate/interpolate` and from
POST /generate and /interpolate; the HTTP headers say what the file's text chunks say."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import gan_serve
from benchmarks.reference_nets import ExamplesNetD, ExamplesNetG, randomize, spread_output
from gan_serve.commands.cli import app as cli_app
from gan_serve.http import ServeSettings, create_app
from gan_serve.http.schemas import GenerateRequest, InterpolateRequest
from gan_serve.images import read_metadata


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> Path:
    """A tiny generator and its discriminator in one file, as seeds/001 saves them."""
    G = spread_output(randomize(ExamplesNetG(nz=100, ngf=8), seed=11), 100)
    D = randomize(ExamplesNetD(ndf=8), seed=12)
    path = tmp_path_factory.mktemp("parity") / "checkpoint0227-99.pth"
    torch.save({"gen": G.state_dict(), "dis": D.state_dict(), "optim_gen": {}, "optim_dis": {}}, path)
    return path


@pytest.fixture(scope="module")
def client(both):
    app = create_app(ServeSettings(rank_with=str(both)), generators={"g": gan_serve.load(both)})
    with TestClient(app) as c:
        yield c


def cli(both: Path, tmp_path: Path, args: list[str], name: str) -> bytes:
    out = tmp_path / name
    res = CliRunner().invoke(cli_app, [args[0], "--network", str(both), *args[1:], "-o", str(out)])
    assert res.exit_code == 0, res.output
    return out.read_bytes()


# (CLI arguments, output file name, route, JSON body): each pair is one request
TABLE = [
    (["generate"], "g.png", "/generate", {}),
    (["generate", "--seed", "5", "--n", "3", "--trunc", "0.7", "--format", "jpg"], "g.jpg",
     "/generate", {"seed": 5, "n": 3, "truncation_psi": 0.7, "format": "jpg"}),
    (["generate", "--seeds", "3-5,100", "--psi", "0.5", "--nrow", "2"], "g.webp",
     "/generate", {"seeds": "3-5,100", "psi": 0.5, "nrow": 2, "format": "webp"}),
    (["generate", "--seeds", "7,9", "--truncation-psi", "1.5"], "g.png",
     "/generate", {"seeds": [7, 9], "truncation": 1.5}),
    (["generate", "--rank-with", "{both}", "--candidates", "24", "--n", "4"], "best.png",
     "/generate", {"candidates": 24, "n": 4}),
    (["generate", "--rank-with", "{both}", "--seeds", "10-29", "--n", "3"], "best.png",
     "/generate", {"candidates": 20, "seeds": "10-29", "n": 3}),
    (["interpolate", "--from", "3", "--to", "17"], "i.png", "/interpolate", {"from": 3, "to": 17}),
    (["interpolate", "--seeds", "3,17,42", "--steps", "4", "--loop", "--method", "lerp"], "walk.gif",
     "/interpolate", {"seeds": "3,17,42", "steps": 4, "loop": True, "method": "lerp", "format": "gif"}),
    (["interpolate", "--seeds", "1,2", "--steps", "5", "--trunc", "0.8", "--nrow", "3"], "i.jpg",
     "/interpolate", {"seeds": [1, 2], "steps": 5, "psi": 0.8, "nrow": 3, "format": "jpg"}),
    (["interpolate", "--from", "4", "--to", "8", "--steps", "3", "--animate", "--duration-ms", "50"],
     "a.webp", "/interpolate", {"from": 4, "to": 8, "steps": 3, "animate": True, "duration_ms": 50,
                                "format": "webp"}),
]


@pytest.mark.parametrize("args,name,route,body", TABLE, ids=[f"{t[2]}:{t[3]}" for t in TABLE])
def test_the_same_request_gives_the_same_bytes_on_both_surfaces(both, client, tmp_path, args, name,
                                                                  route, body):
    args = [a.replace("{both}", str(both)) for a in args]
    r = client.post(route, json=body)
    assert r.status_code == 200, r.text
    assert r.content == cli(both, tmp_path, args, name)
    if name.endswith(".png"):  # the headers render the file's own provenance, recipe included
        meta = read_metadata(r.content)
        assert meta["gan_serve.recipe"] == r.headers["x-gan-serve-recipe"] == "1"
        for key, value in meta.items():
            if key.startswith("gan_serve."):
                header = "x-gan-serve-" + key.removeprefix("gan_serve.").replace("_", "-")
                assert r.headers[header] == value, key
        assert r.headers["x-seeds"] == meta.get("gan_serve.seeds", r.headers.get("x-seeds"))


def test_ranked_grids_name_their_candidates(client):
    r = client.post("/generate", json={"candidates": 24, "n": 4})
    assert r.headers["x-gan-serve-ranked-from"] == "0-23" and len(r.headers["x-seeds"].split(",")) == 4
    body = client.post("/generate", json={"candidates": 24, "n": 4, "layout": "json"}).json()
    assert body["provenance"]["gan_serve.ranked_from"] == "0-23"
    assert ",".join(str(i["seed"]) for i in body["images"]) == r.headers["x-seeds"]


def test_key_latents_travel_as_npy_base64_or_lists(both, client, tmp_path):
    keys = tmp_path / "keys.npy"
    res = CliRunner().invoke(cli_app, ["generate", "-m", str(both), "--seeds", "3,17,42",
                                       "--latents-out", str(keys)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.npy"]  # --latents-out alone: no grid
    z = np.load(keys)
    expected = cli(both, tmp_path, ["interpolate", "--latents", str(keys), "--steps", "4"], "k.png")
    for latents in (base64.b64encode(keys.read_bytes()).decode(), z.tolist()):
        r = client.post("/interpolate", json={"latents": latents, "steps": 4})
        assert r.status_code == 200 and r.content == expected
        assert "x-seeds" not in r.headers and r.headers["x-gan-serve-method"] == "slerp"
    # keys given as latents are the seeds' own keys: the same frames as the seeds
    seeds = client.post("/interpolate", json={"seeds": "3,17,42", "steps": 4})
    assert np.array_equal(*(np.asarray(read_png(c)) for c in (seeds.content, expected)))


def read_png(data: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data))


def test_a_server_without_a_discriminator_says_how_to_start_one(both):
    with TestClient(create_app(ServeSettings(), generators={"g": gan_serve.load(both)})) as c:
        r = c.post("/generate", json={"candidates": 8, "n": 2})
    assert r.status_code == 422 and "gan-serve serve --rank-with D.pth" in r.json()["error"]


# HTTP fields that are not CLI options, and CLI options that are not HTTP fields, each with why
HTTP_ONLY = {"layout"}  # the CLI writes files: -o (grid), --individual (one per seed)
CLI_ONLY = {  # where the file goes, and how the server loads its models (serve's own flags)
    "output", "individual", "latents_out", "rank_with", "arch", "arch_kwargs", "output_range",
    "z_dim", "backend", "device", "precision", "trust_code", "help"}


@pytest.mark.parametrize("command,schema", [("generate", GenerateRequest),
                                            ("interpolate", InterpolateRequest)])
def test_every_option_has_the_same_name_on_both_surfaces(command, schema):
    group = typer.main.get_command(cli_app)
    options = {o.lstrip("-").replace("-", "_") for p in group.commands[command].params
               for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
    fields = {f.alias or name for name, f in schema.model_fields.items()}
    fields |= {"truncation_psi", "psi"}  # the aliases of truncation, on both
    assert fields - HTTP_ONLY <= options, fields - options
    assert options - CLI_ONLY - {"trunc", "outdir", "network", "strip", "model"} <= fields | {"model"}, \
        options - fields
