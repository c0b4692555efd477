"""Torch eager backend: precisions, devices, and the DESIGN.md tolerances."""

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
    fp32 = gan_serve.load(path).generate(range(16))
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
        gan_serve.load(small_ckpt, precision="int8")


def test_cuda_without_gpu_says_so(small_ckpt):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU; the test covers machines without one")
    with pytest.raises(InputError, match="no CUDA GPU"):
        gan_serve.load(small_ckpt, device="cuda")
    assert gan_serve.load(small_ckpt, device="auto").backend == "torch/cpu/fp32"
    with pytest.raises(InputError, match="exported .onnx"):
        gan_serve.load(small_ckpt, device="tensorrt")


def test_onnx_backend_on_a_checkpoint_points_to_the_exporter(small_ckpt):
    with pytest.raises(InputError, match="gan-export onnx"):
        gan_serve.load(small_ckpt, backend="onnx")
