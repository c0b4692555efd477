"""GPU indices (`--device cuda:1`): parsed, checked against the GPUs the library sees (mocked here:
the test machines have none), and left out of the provenance."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import gan_serve
from gan_serve.backends import describe, parse_device
from gan_serve.errors import InputError


@pytest.mark.parametrize("device,want", [
    ("cpu", ("cpu", None)), ("cuda", ("cuda", None)), ("cuda:0", ("cuda", 0)),
    ("cuda:12", ("cuda", 12)), ("tensorrt:1", ("tensorrt", 1)), ("auto", ("auto", None)),
])
def test_parse_device(device, want):
    assert parse_device(device) == want


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cuda:-1", "cpu:0", "auto:1", "cuda:0:1"])
def test_malformed_devices_are_refused_in_one_line(device):
    with pytest.raises(InputError, match=r"unknown device .*cuda:1$"):
        parse_device(device)


def test_the_provenance_names_the_device_kind_not_its_index():
    backend = SimpleNamespace(kind="torch", device="cuda:1", precision="fp16")
    assert describe(backend) == "torch/cuda/fp16"


@pytest.fixture()
def gpus(monkeypatch):
    """Pretend torch sees `n` GPUs: `gpus(2)`."""
    import torch

    def see(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return see


def test_torch_checks_the_index_against_the_gpus_it_sees(gpus):
    from gan_serve.backends.torch_backend import resolve_device

    gpus(2)
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cuda") == "cuda"
    gpus(1)
    with pytest.raises(InputError, match=r"^--device cuda:1 was asked for, but torch sees 1 GPU \(cuda:0\)$"):
        resolve_device("cuda:1")
    gpus(3)
    with pytest.raises(InputError, match=r"torch sees 3 GPUs \(cuda:0 to cuda:2\)$"):
        resolve_device("cuda:7")


def test_an_index_without_any_gpu_says_use_cpu(small_ckpt):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(InputError, match=r"^--device cuda:1 was asked for, but torch sees no CUDA GPU; use"):
        gan_serve.load(small_ckpt, device="cuda:1")


def test_onnx_runtime_gets_the_index_as_device_id():
    from gan_serve.backends.onnx_backend import _providers

    cuda, cpu = _providers("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"], False)
    assert cuda[0] == "CUDAExecutionProvider" and cuda[1]["device_id"] == 1 and cpu == "CPUExecutionProvider"
    trt = _providers("tensorrt:2", [], True)[0]
    assert trt[0] == "TensorrtExecutionProvider" and trt[1]["device_id"] == 2
    assert _providers("cuda", [], False)[0][1]["device_id"] == 0


def test_onnx_checks_the_index_against_the_driver(artifacts, monkeypatch):
    import onnxruntime as ort

    from gan_serve.backends import onnx_backend

    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: both)
    monkeypatch.setattr(onnx_backend, "cuda_device_count", lambda: 1)
    with pytest.raises(InputError, match=r"^--device cuda:1 was asked for, but the CUDA driver sees 1 GPU"):
        gan_serve.load(artifacts["onnx"], device="cuda:1")


def test_onnx_index_on_a_cpu_only_runtime(artifacts):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    with pytest.raises(InputError, match=r"^--device cuda:1 was asked for, but ONNX Runtime runs on CPU"):
        gan_serve.load(artifacts["onnx"], device="cuda:1")


def test_generate_refuses_a_missing_gpu_index_in_one_line(small_ckpt, tmp_path):
    import torch
    from typer.testing import CliRunner

    from gan_serve.commands.cli import app

    if torch.cuda.device_count() > 9:
        pytest.skip("this machine has a GPU cuda:9")
    res = CliRunner().invoke(app, ["generate", "-m", str(small_ckpt), "--device", "cuda:9",
                                   "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 2 and not (tmp_path / "g.png").exists()
    assert res.stderr.startswith("error: --device cuda:9 was asked for, but torch sees ")
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
