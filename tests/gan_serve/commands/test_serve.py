"""`gan-serve serve`: bad settings and models refused in one line before binding a port;
a real server process."""

from __future__ import annotations

import signal

import httpx2
import pytest
from typer.testing import CliRunner

from gan_serve.commands.cli import app
from tests.gan_serve.http.conftest import ServeProcess


@pytest.mark.parametrize("args,match", [
    (["--max-batch", "0"], "max_batch"),
    (["--port", "70000"], "port"),
    (["--model", "/no/such/g.pth"], "no such file"),
    (["--backend", "tensorflow"], "unknown backend"),
    (["--api-key-env", "SURELY_UNSET_GAN_KEY"], "SURELY_UNSET_GAN_KEY"),
    (["--rank-with", "/no/such/d.pth"], "no such file"),
    (["--max-n", "5000"], "max_n"),  # a server may lower the CLI's limits, never raise them
    (["--max-steps", "1"], "max_steps"),
])
def test_bad_serve_settings(args, match, monkeypatch):
    monkeypatch.delenv("SURELY_UNSET_GAN_KEY", raising=False)
    res = CliRunner().invoke(app, ["serve", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], res.stderr


def test_two_models_with_the_same_name(small_ckpt, tmp_path):
    other = tmp_path / small_ckpt.name
    other.write_bytes(small_ckpt.read_bytes())
    res = CliRunner().invoke(app, ["serve", "-m", str(small_ckpt), "-m", str(other)])
    assert res.exit_code == 2 and "two models are named" in res.stderr


def test_serve_notes_emulated_bf16_once_before_binding(small_ckpt, tmp_path, monkeypatch):
    import uvicorn

    from gan_serve.backends import torch_backend

    other = tmp_path / "other.pth"
    other.write_bytes(small_ckpt.read_bytes())
    monkeypatch.setattr(torch_backend, "cpu_bf16_is_native", lambda: False)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)  # no port: the notes come first
    res = CliRunner().invoke(app, ["serve", "-m", str(small_ckpt), "-m", str(other), "--precision", "bf16"])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("bf16 is emulated") == 1, res.stderr  # one note for two models


def test_serve_help_names_the_knobs():
    out = CliRunner().invoke(app, ["serve", "--help"]).stdout
    for flag in ("--max-batch", "--max-delay-ms", "--max-queue", "--max-n", "--api-key-env", "--backend"):
        assert flag in out


def test_a_real_server_process_gives_the_cli_bytes(serve_process, small_ckpt, tmp_path):
    r = httpx2.post(f"{serve_process.url}/generate", json={"seed": 42, "n": 16}, timeout=30)
    assert r.status_code == 200 and r.headers["x-seeds"] == "42-57"
    res = CliRunner().invoke(app, ["generate", "-m", str(small_ckpt), "--seed", "42", "--n", "16",
                                   "-o", str(tmp_path / "grid.png")])
    assert res.exit_code == 0 and r.content == (tmp_path / "grid.png").read_bytes()
    assert [m["name"] for m in httpx2.get(f"{serve_process.url}/models").json()] == ["netG_epoch_24"]


def test_environment_settings_and_sigterm(small_ckpt):
    server = ServeProcess(env={"GAN_SERVE_MODEL": str(small_ckpt), "GAN_SERVE_MAX_N": "2"})
    try:
        r = httpx2.post(f"{server.url}/generate", json={"n": 3}, timeout=30)
        assert r.status_code == 422 and r.json() == {"error": "n must be an integer from 1 to 2, got 3"}
        assert httpx2.get(f"{server.url}/readyz").json() == {"ready": True, "models": ["netG_epoch_24"]}
    finally:
        server.stop(timeout=15)
    assert server.proc.returncode in (0, -signal.SIGTERM), server.output
    assert f"serving {small_ckpt.name} on {server.url}/" in server.output
