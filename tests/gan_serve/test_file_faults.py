"""Files that are not what their name says, or declare more than they should: one line each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib import format as npy
from typer.testing import CliRunner

import gan_serve
from gan_serve.commands.cli import app

runner = CliRunner()


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_torch_file_named_safetensors_loads_by_its_bytes(legacy, tmp_path, zip_format):
    fx = legacy["examples_nc1"]
    path = tmp_path / "netG.safetensors"
    torch.save(fx.module.state_dict(), path, _use_new_zipfile_serialization=zip_format)
    assert np.array_equal(gan_serve.load(path).generate([1, 2]), gan_serve.load(fx.path).generate([1, 2]))
    res = runner.invoke(app, ["generate", "--rank-with", str(path), "--n", "2", "--candidates", "4",
                              "-o", str(tmp_path / "r.png")])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert "it is a DCGAN generator" in res.stderr  # read as what it is, then judged


def _header_only(path, shape, descr="<f4"):
    with open(path, "wb") as fh:
        npy.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False, "shape": shape})
    return path


@pytest.mark.parametrize("name,make,match", [
    ("huge", lambda p: _header_only(p, (10**12, 100)), "shape (1000000000000, 100); latents are at most"),
    ("3d", lambda p: _header_only(p, (2, 2, 100)), "shaped (K, z_dim)"),
    ("ints", lambda p: np.save(p, np.zeros((2, 100), np.int64)), "int64 values"),
    ("truncated", lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\x76"), "cannot read latents"),
    ("not npy", lambda p: p.write_bytes(b"hello"), "cannot read latents"),
])
def test_latents_files_are_checked_before_reading(tmp_path, name, make, match):
    path = tmp_path / f"{name}.npy"
    make(path)
    res = runner.invoke(app, ["interpolate", "--latents", str(path), "-o", str(tmp_path / "i.png")])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], lines
