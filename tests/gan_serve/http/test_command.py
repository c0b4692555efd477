"""`gan-serve serve` refuses bad settings and bad models in one line, before binding a port."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gan_serve.cli import app


@pytest.mark.parametrize("args,match", [
    (["--max-batch", "0"], "max_batch"),
    (["--port", "70000"], "port"),
    (["--model", "/no/such/g.pth"], "no such file"),
    (["--backend", "tensorflow"], "unknown backend"),
    (["--api-key-env", "SURELY_UNSET_GAN_KEY"], "SURELY_UNSET_GAN_KEY"),
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


def test_serve_help_names_the_knobs():
    out = CliRunner().invoke(app, ["serve", "--help"]).stdout
    for flag in ("--max-batch", "--max-delay-ms", "--max-queue", "--max-n", "--api-key-env", "--backend"):
        assert flag in out
