"""Without Ray: `gan-serve bulk` says how to install it, and checks its options before starting."""

from __future__ import annotations

import sys

from typer.testing import CliRunner

from gan_serve.cli import app


def test_missing_ray_is_one_line_with_the_install_commands(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    r = CliRunner().invoke(app, ["bulk", "--n", "4", "--individual", str(tmp_path / "out")])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0
    assert 'pip install -e ".[ray]"' in r.output and 'pip install "gan-serve[ray]"' in r.output
    assert not (tmp_path / "out").exists()


def test_bad_options_fail_before_ray_starts(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", object())  # any use of Ray would fail loudly
    for extra, msg in ((["--workers", "0"], "--workers must be at least 1"),
                       (["--range-size", "0"], "--range-size must be at least 1"),
                       (["--psi", "3"], "psi"),
                       (["--format", "bmp"], "bmp")):
        r = CliRunner().invoke(app, ["bulk", "--n", "4", "--individual", str(tmp_path / "o"), *extra])
        assert r.exit_code == 2 and msg in r.output, (extra, r.output)
    assert not (tmp_path / "o").exists()
