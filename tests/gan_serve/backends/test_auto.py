"""`--backend auto`: what it picks, that its bytes are fixed, and that they stay in tolerance."""

from __future__ import annotations

import numpy as np
import pytest

import gan_serve
from gan_serve.backends import torch_backend as tb
from gan_serve.fsutil import file_sha256
from gan_serve.models import resolve_model


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_auto_runs_bf16_where_the_cpu_has_bf16_hardware(small_ckpt, monkeypatch):
    monkeypatch.setattr(tb, "cpu_bf16_is_native", lambda: True)
    G = gan_serve.load(small_ckpt)
    assert G.backend == "torch/cpu/bf16" and G.runner.micro_batch == 16
    assert "pin it with --backend torch --precision bf16" in G.auto_note
    assert G.provenance()["gan_serve.micro_batch"] == "16"
    assert next(G.module.parameters()).dtype.is_floating_point  # the saved module stays fp32
    assert str(next(G.module.parameters()).dtype) == "torch.float32"  # the saved module stays fp32
    monkeypatch.setattr(tb, "cpu_bf16_is_native", lambda: False)
    G = gan_serve.load(small_ckpt)
    assert G.backend == "torch/cpu/fp32" and G.auto_note is None


def test_pinned_torch_is_fp32_and_says_nothing(small_ckpt):
    G = gan_serve.load(small_ckpt, backend="torch")
    assert G.backend == "torch/cpu/fp32" and G.auto_note is None


@pytest.mark.parametrize("name", ["seed000", "examples_nc3", "examples_nc1"])
def test_bf16_weights_path_keeps_its_bytes_and_the_tolerance(legacy, name):
    path = legacy[name].path
    G = gan_serve.load(path, precision="bf16")
    seeds = list(range(40)) + [2**32 - 1]
    a = G.generate(seeds)
    # the same bytes however the seeds are grouped, and from a second load
    assert np.array_equal(a, np.concatenate([G.generate(seeds[:3]), G.generate(seeds[3:])]))
    assert np.array_equal(a[7], G.generate([seeds[7]])[0])
    assert np.array_equal(a, gan_serve.load(path, precision="bf16").generate(seeds))
    fp32 = gan_serve.load(path, backend="torch").generate(seeds)
    assert np.abs(fp32.astype(int) - a.astype(int)).max() <= 3
    assert psnr(fp32, a) >= 35


@pytest.fixture(scope="module")
def bundled():
    import onnxruntime  # noqa: F401  (in `all`, which the tests install: no skip)
    return gan_serve.load()


def test_bundled_model_runs_its_onnx_export_with_the_checkpoints_identity(bundled):
    torch_G = gan_serve.load(backend="torch")
    assert bundled.backend == "onnx/cpu/fp32" and bundled.module is None
    assert bundled.model_id == torch_G.model_id  # the model is the checkpoint; the backend differs
    assert "pin it with --backend onnx --precision fp32" in bundled.auto_note
    seeds = range(42, 42 + 64)
    a, b = bundled.generate(seeds), torch_G.generate(seeds)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # ARCHITECTURE.md: fp32 across backends
    assert np.array_equal(a, gan_serve.load(backend="onnx").generate(seeds))  # pinned: same bytes
    assert np.array_equal(a[:5], bundled.generate(range(42, 47)))


def test_bundled_onnx_export_is_from_the_bundled_weights():
    import onnx
    path, _ = resolve_model("default")
    meta = {p.key: p.value for p in onnx.load(str(path.with_suffix(".onnx"))).metadata_props}
    assert meta["gan_serve.source_sha256"] == file_sha256(path), (
        "default.onnx is stale: re-export it with "
        "`gan-export onnx default -o gan_serve/models/default.onnx`")


def test_a_stale_bundled_export_is_never_used(artifacts, monkeypatch):
    import onnxruntime  # noqa: F401  (in `all`, which the tests install: no skip)

    import gan_serve.models as models

    monkeypatch.setattr(models, "bundled_onnx", lambda path, name: artifacts["onnx"])
    assert gan_serve.load().runner.kind == "torch"
