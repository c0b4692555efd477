"""One local Ray instance (2 CPUs, a small object store), started as the commands start theirs
(on loopback, under its supervisor), for every test here that asks for it, and a small ONNX
generator whose Ray workers start without importing torch."""

from __future__ import annotations

from pathlib import Path

import pytest

import gan_serve
from export import export_onnx, prepare


@pytest.fixture(scope="session")
def local_ray():
    ray = pytest.importorskip("ray", reason="the `ray` extra is not installed")
    from gan_serve.scale import connected

    with connected("local", num_cpus=2, object_store_memory=100_000_000):
        yield ray


@pytest.fixture(scope="session")
def onnx_model(small_ckpt, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "g.onnx"
    export_onnx(prepare(gan_serve.load(small_ckpt)), path)
    return path
