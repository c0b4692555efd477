"""A client generated from the app's OpenAPI document by a real generator calls every route.

openapi-python-client (pinned) is installed into its own venv once per test session (about
20 s from pip's cache), generates a client from /openapi.json of a real uvicorn server on
127.0.0.1 with the config docs/serving.md gives (docs/openapi-python-client.yaml), and
generated_client_calls.py runs that client in the generator's venv against the server. The
bytes it gets must be the CLI's. Marked `client`: CI runs it, `-m "not client"` skips it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from gan_serve.commands.cli import app as cli_app
from gan_serve.http import ServeSettings, create_app
from gan_serve.images import read_metadata
from tests.gan_serve.http.conftest import REPO, cli_file

pytestmark = pytest.mark.client

GENERATOR = "openapi-python-client==0.29.1"
CONFIG = REPO / "docs" / "openapi-python-client.yaml"
CALLS = Path(__file__).with_name("generated_client_calls.py")
KEY_ENV = "GAN_SERVE_TEST_CLIENT_KEY"


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _run(cmd: list, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="session")
def generator_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("openapi-generator") / "venv"
    made = _run([sys.executable, "-m", "venv", venv])
    assert made.returncode == 0, made.stderr
    pip = _run([_bin(venv, "python"), "-m", "pip", "install", "-q", "--no-compile", GENERATOR])
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


def generate_client(venv: Path, url: str, dest: Path, key: str | None = None) -> tuple[dict, Path]:
    """The server's OpenAPI document, and the package generated from it (no warning allowed:
    a response the generator cannot read is a warning)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    document = httpx2.get(f"{url}/openapi.json", headers=headers, timeout=10).json()
    (dest / "openapi.json").write_text(json.dumps(document))
    package = dest / "gan_serve_client"
    # the generator formats its output with ruff (the test extra's, beside this interpreter)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    made = _run([_bin(venv, "openapi-python-client"), "generate", "--path", dest / "openapi.json",
                 "--config", CONFIG, "--meta", "none", "--output-path", package, "--fail-on-warning"],
                env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    return document, package


def call_every_route(venv: Path, url: str, package: Path, out: Path, key: str | None = None) -> dict:
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    ran = _run([_bin(venv, "python"), CALLS, url, out, *([key] if key else [])], env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return json.loads((out / "answers.json").read_text())


def test_a_generated_client_calls_every_route_and_gets_the_clis_bytes(generator_venv, G, small_ckpt,
                                                                       tmp_path, live):
    app = create_app(ServeSettings(max_n=64, naive_endpoint=True), generators={"netG_epoch_24": G})
    with live(app) as server:
        document, package = generate_client(generator_venv, server.url, tmp_path)
        answers = call_every_route(generator_venv, server.url, package, tmp_path / "got")
    got = tmp_path / "got"
    # a keyless server declares no security: every function takes a plain Client
    assert "securitySchemes" not in document.get("components", {})
    assert "client: AuthenticatedClient | Client," in (package / "api" / "images" / "generate.py").read_text()

    assert (got / "generate.png").read_bytes() == cli_file(small_ckpt, tmp_path, "generate")
    assert (got / "generate-7.webp").read_bytes() == cli_file(small_ckpt, tmp_path, "generate", "--seed",
                                                              "7", "--n", "4", name="g.webp")
    assert (got / "interpolate.png").read_bytes() == cli_file(small_ckpt, tmp_path, "interpolate", "--from",
                                                              "1", "--to", "5", "--steps", "4")
    assert (got / "interpolate.gif").read_bytes() == cli_file(small_ckpt, tmp_path, "interpolate", "--seeds",
                                                              "1,5", "--steps", "3", name="walk.gif")
    res = CliRunner().invoke(cli_app, ["generate", "-m", str(small_ckpt), "--seeds", "3,5",
                                       "--individual", str(tmp_path / "individual")])
    assert res.exit_code == 0, res.output
    singles = [(tmp_path / "individual" / f"seed000{s}.png").read_bytes() for s in (3, 5)]
    zf = zipfile.ZipFile(io.BytesIO((got / "generate.zip").read_bytes()))
    assert [zf.read(f"seed000{s}.png") for s in (3, 5)] == singles
    layout_json = json.loads((got / "generate.json").read_text())  # the JSON layout, read from the File
    assert [base64.b64decode(i["image"]) for i in layout_json["images"]] == singles
    assert read_metadata((got / "naive.png").read_bytes())["gan_serve.seeds"] == "2-5"

    assert [m["model_id"] for m in answers["models"]] == [G.model_id]
    assert "gan_serve_requests_total" in answers["metrics"]
    assert answers["healthz"] == {"status": "ok"}
    assert answers["readyz"] == {"ready": True, "models": ["netG_epoch_24"]}
    assert answers["refused"].startswith("n ") and answers["generate_status"] == 200


def test_a_client_generated_from_a_keyed_server_sends_the_key(generator_venv, G, small_ckpt, tmp_path, live,
                                                              monkeypatch):
    monkeypatch.setenv(KEY_ENV, "s3cret-key")
    app = create_app(ServeSettings(max_n=64, api_key_env=KEY_ENV, naive_endpoint=True),
                     generators={"netG_epoch_24": G})
    with live(app) as server:
        document, package = generate_client(generator_venv, server.url, tmp_path, "s3cret-key")
        answers = call_every_route(generator_venv, server.url, package, tmp_path / "got", "s3cret-key")
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert "client: AuthenticatedClient," in (package / "api" / "images" / "generate.py").read_text()
    assert "client: AuthenticatedClient | Client," in (package / "api" / "health" / "healthz.py").read_text()
    assert (tmp_path / "got" / "generate.png").read_bytes() == cli_file(small_ckpt, tmp_path, "generate")
    assert answers["without_key"][0] == 401 and "API key" in answers["without_key"][1]
