"""Torch eager backend: precisions, devices, and the ARCHITECTURE.md tolerances."""

from __future__ import annotations

import numpy as np
import pytest

import gan_serve
from gan_serve.errors import InputError


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("name", ["seed000", "examples_nc1"])
def test_bf16_autocast_on_cpu_is_within_tolerance(legacy, name):
    path = legacy[name].path
    fp32 = gan_serve.load(path, backend="torch").generate(range(16))
    G = gan_serve.load(path, precision="bf16")
    assert G.backend == "torch/cpu/bf16"
    bf16 = G.generate(range(16))
    assert np.abs(fp32.astype(int) - bf16.astype(int)).max() <= 3
    assert psnr(fp32, bf16) >= 35
    assert np.array_equal(bf16[5], G.generate([5])[0])  # still batch-independent


def test_fp16_on_cpu_is_refused_with_the_alternative(small_ckpt):
    with pytest.raises(InputError, match="bf16"):
        gan_serve.load(small_ckpt, precision="fp16")


def test_unknown_backend_device_precision(small_ckpt):
    with pytest.raises(InputError, match="unknown backend"):
        gan_serve.load(small_ckpt, backend="tensorflow")
    with pytest.raises(InputError, match="unknown device"):
        gan_serve.load(small_ckpt, device="tpu")
    with pytest.raises(InputError, match="unknown precision"):
        gan_serve.load(small_ckpt, precision="int4")  # int8 is one now


def test_cuda_without_gpu_says_so(small_ckpt):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU; the test covers machines without one")
    with pytest.raises(InputError, match="no CUDA GPU"):
        gan_serve.load(small_ckpt, device="cuda")
    assert gan_serve.load(small_ckpt, device="auto").backend.startswith("torch/cpu/")
    with pytest.raises(InputError, match="exported .onnx"):
        gan_serve.load(small_ckpt, device="tensorrt")


def test_onnx_backend_on_a_checkpoint_points_to_the_exporter(small_ckpt):
    with pytest.raises(InputError, match="gan-export onnx"):
        gan_serve.load(small_ckpt, backend="onnx")


@pytest.mark.parametrize(("probes", "native"), [
    ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, False),  # AVX2 only
    ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": True}, True),  # AMX
    ({"_is_avx512_bf16_supported": True}, True),  # AVX512-BF16, an older torch without the AMX probe
    ({}, True),  # a torch with neither probe: no false alarm
])
def test_cpu_bf16_is_native_reads_torchs_probes(probes, native, monkeypatch):
    import torch

    from gan_serve.backends import torch_backend as tb

    for name in tb._BF16_PROBES:
        monkeypatch.delattr(torch.cpu, name, raising=False)
        if name in probes:
            monkeypatch.setattr(torch.cpu, name, lambda value=probes[name]: value, raising=False)
    assert tb.cpu_bf16_is_native() is native


def test_slow_bf16_note_only_for_emulated_bf16_on_the_cpu(small_ckpt, monkeypatch):
    from gan_serve.backends import torch_backend as tb

    monkeypatch.setattr(tb, "cpu_bf16_is_native", lambda: False)
    note = gan_serve.load(small_ckpt, precision="bf16").precision_note
    assert note is not None and "emulated" in note and "--precision fp32" in note
    assert gan_serve.load(small_ckpt).precision_note is None  # fp32
    assert tb.slow_bf16_note("cuda", "bf16") is None  # GPUs have bf16 units
    monkeypatch.setattr(tb, "cpu_bf16_is_native", lambda: True)
    assert gan_serve.load(small_ckpt, precision="bf16").precision_note is None
