"""Without Ray: `gan-serve bulk` and `serve --ray` say how to install it, and check their options
before starting anything."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from gan_serve.commands.cli import app
from gan_serve.errors import InputError
from gan_serve.scale.ray_serve import ReplicaPlan
from tests.gan_serve.http.conftest import free_port


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


def test_replica_plans_map_to_ray_serve_options():
    fixed = ReplicaPlan.parse("3").deployment_options(max_batch=64)
    assert fixed == {"max_ongoing_requests": 64, "num_replicas": 3,
                     "ray_actor_options": {"num_cpus": 1.0, "num_gpus": 0.0}}
    auto = ReplicaPlan.parse("1-8", target=12, cpus=2, device="cuda").deployment_options(max_batch=32)
    assert auto["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 12}
    assert auto["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 1.0} and "num_replicas" not in auto
    default_target = ReplicaPlan.parse("2-4").deployment_options(64)["autoscaling_config"]
    assert default_target["target_ongoing_requests"] == 32  # half of what a replica takes at once


def test_serve_ray_options_are_checked_before_anything_loads(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", object())  # any use of Ray would fail loudly
    for args, msg in ((["--replicas", "2"], "--replicas only apply with --ray"),
                      (["--ray", "--workers", "2"], "--workers and --ray do not mix"),
                      (["--ray", "--replicas", "3-1"], "--replicas must be N or MIN-MAX"),
                      (["--ray", "--replicas", "two"], "--replicas must be N or MIN-MAX"),
                      (["--ray", "--target-ongoing-requests", "0"], "above 0")):
        r = CliRunner().invoke(app, ["serve", "-m", "/nonexistent.pth", *args])
        assert r.exit_code == 2 and msg in r.output, (args, r.output)


def test_serve_ray_without_ray_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    r = CliRunner().invoke(app, ["serve", "--ray", "--replicas", "2"])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0
    assert 'pip install -e ".[ray]"' in r.output


def test_an_unreachable_cluster_is_one_line_at_once(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", SimpleNamespace(is_initialized=lambda: False))
    port = free_port()  # nothing listens there
    for address, msg in ((f"127.0.0.1:{port}", "cannot reach the Ray cluster"),
                         ("somewhere", "--address must be auto, HOST:PORT or ray://HOST:PORT")):
        r = CliRunner().invoke(app, ["bulk", "--n", "4", "--address", address,  # the bundled model
                                     "--individual", str(tmp_path / "o")])
        assert r.exit_code == 2 and msg in r.output and r.output.strip().count("\n") == 0, r.output
    assert not (tmp_path / "o").exists()


def test_ci_installs_ray_and_knows_the_marker():
    """The Ray tests skip where ray is missing; CI's `.[all,test]` install must therefore have it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    assert any(dep.startswith("ray[serve]") for dep in extras["ray"])

    def reached(name: str) -> set[str]:  # `all` names `full`, which names `ray`
        inner = {e for dep in extras[name] if dep.startswith("gan-serve[")
                 for e in dep.split("[")[1].rstrip("]").split(",")}
        return inner.union(*(reached(e) for e in inner))

    assert "ray" in reached("all")
    assert any(m.startswith("ray:") for m in project["tool"]["pytest"]["ini_options"]["markers"])


def test_serve_config_args_are_serve_settings_and_a_replica_plan():
    from gan_serve.scale.ray_serve import builder_args

    settings, plan = builder_args({"models": "a.onnx,b.pth", "max_batch": 16, "replicas": "1-4",
                                   "target_ongoing_requests": "6", "cpus_per_replica": 2})
    assert settings.models == ["a.onnx", "b.pth"] and settings.max_batch == 16
    assert plan == ReplicaPlan(1, 4, 6.0, 2.0, 0.0)
    with pytest.raises(InputError, match="max_batch"):
        builder_args({"max_batch": 0})
    with pytest.raises(InputError, match="--replicas must be"):
        builder_args({"replicas": "0"})


def test_replicas_get_absolute_paths_of_every_file(monkeypatch, tmp_path):
    """A replica runs in Ray's working directory: models, directions and the ranker reach it by
    absolute path; a bundled model's name stays a name."""
    from gan_serve.http import ServeSettings
    from gan_serve.scale.ray_serve import replica_settings

    for name in ("g.onnx", "hair.npz", "d.pth"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    settings = ServeSettings(models=["g.onnx", "default"], directions=["hair.npz"], rank_with="d.pth")
    got = replica_settings(settings, ReplicaPlan.parse("2"))
    assert got.models == [str(tmp_path / "g.onnx"), "default"]
    assert got.directions == [str(tmp_path / "hair.npz")] and got.rank_with == str(tmp_path / "d.pth")
    assert got.device == settings.device
