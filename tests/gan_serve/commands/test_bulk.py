"""`gan-serve bulk` with no cluster to join: it writes on this machine, the files of `generate
--individual`, and never starts Ray; a re-run over a complete folder loads nothing."""

from __future__ import annotations

import socket
import sys

import pytest
from typer.testing import CliRunner

from gan_serve import loading
from gan_serve.commands.cli import app
from gan_serve.scale import cluster_to_join


class _NoRay:
    """`ray` for a test that must not use it: asking whether it is joined is all it allows."""

    def is_initialized(self) -> bool:
        return False

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"ray.{name} was used")


@pytest.fixture
def no_cluster(monkeypatch, tmp_path):
    """No $RAY_ADDRESS, no `ray start` cluster (an empty Ray temp folder), Ray not to be used."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray-temp"))
    monkeypatch.setitem(sys.modules, "ray", _NoRay())


def _run(*args: str):
    return CliRunner().invoke(app, [*args])


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_without_a_cluster_bulk_writes_the_generate_files_here(no_cluster, onnx_model, tmp_path):
    opts = ["-m", str(onnx_model), "--seed", "5", "--n", "40", "--psi", "0.8", "--individual"]
    r = _run("generate", *opts, str(tmp_path / "single"))
    assert r.exit_code == 0, r.output
    r = _run("bulk", *opts, str(tmp_path / "bulk"))
    assert r.exit_code == 0, r.output
    assert r.output.startswith("no Ray cluster to join (--address, $RAY_ADDRESS, `ray start` here): "
                               "writing on this machine as `generate --individual` does\n")
    assert "wrote 40 files into" in r.output and "(0 were already complete) on this machine" in r.output
    single = _files(tmp_path / "single")
    assert _files(tmp_path / "bulk") == single  # same names, same bytes

    for name in sorted(single)[::13]:  # a killed run's folder: 4 files missing
        (tmp_path / "bulk" / name).unlink()
    r = _run("bulk", *opts, str(tmp_path / "bulk"))
    assert r.exit_code == 0 and "wrote 4 files" in r.output and "(36 were already complete)" in r.output
    assert _files(tmp_path / "bulk") == single


def test_a_rerun_over_a_complete_folder_loads_no_model(no_cluster, onnx_model, tmp_path, monkeypatch):
    folder = tmp_path / "bulk"
    opts = ["-m", str(onnx_model), "--seeds", "3-9", "--individual", str(folder), "--format", "webp"]
    assert _run("bulk", *opts).exit_code == 0
    before = _files(folder)

    def no_load(*_, **__):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loading.HowToLoad, "load", no_load)
    r = _run("bulk", *opts)
    assert r.exit_code == 0, r.output
    assert r.output == f"all 7 files are in {folder}/ already: nothing to write\n"
    assert _files(folder) == before
    r = _run("bulk", *opts[:-2])  # the same seeds as png: none of them is there
    assert r.exit_code != 0 and "the model was loaded" in repr(r.exception)


def test_the_cluster_to_join(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert cluster_to_join(None) is None  # nothing here: bulk writes here, serve --ray starts one
    assert cluster_to_join("local") == "local" and cluster_to_join("10.0.0.5:6379") == "10.0.0.5:6379"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    assert cluster_to_join(None) == "10.0.0.7:6379"
    monkeypatch.delenv("RAY_ADDRESS")

    (tmp_path / "ray").mkdir()
    address_file = tmp_path / "ray" / "ray_current_cluster"  # what `ray start` writes
    with socket.create_server(("127.0.0.1", 0)) as gcs:
        address = f"127.0.0.1:{gcs.getsockname()[1]}"
        address_file.write_text(address)
        assert cluster_to_join(None) == address
    assert cluster_to_join(None) is None  # the file outlived its cluster: nothing answers there
    address_file.write_text("garbage")
    assert cluster_to_join(None) is None
