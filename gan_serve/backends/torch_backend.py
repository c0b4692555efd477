"""Torch eager backend: fp32, bf16 autocast (CPU or CUDA), fp16 autocast (CUDA only)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..spec import ModelSpec
from . import micro_batch_for

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, since torch 2.1


def cpu_bf16_is_native() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles). Without either,
    oneDNN emulates bf16 and autocast runs several times slower than fp32 (BENCHMARKS.md).
    True when this torch has neither probe: no claim is better than a false alarm."""
    probes = [probe for name in _BF16_PROBES if callable(probe := getattr(torch.cpu, name, None))]
    return not probes or any(probe() for probe in probes)


def slow_bf16_note(device: str, precision: str) -> str | None:
    """A one-line note when bf16 was asked for on a CPU that can only emulate it, else None."""
    if precision != "bf16" or device != "cpu" or cpu_bf16_is_native():
        return None
    return (f"note: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bf16 hardware "
            "(AVX512-BF16 or AMX): bf16 is emulated and runs several times slower than fp32 here; "
            "use --precision fp32")


def resolve_device(device: str) -> str:
    """'auto' -> cuda when torch sees a GPU, else cpu; 'cuda' without a GPU is an error."""
    if device == "tensorrt":
        raise InputError("--device tensorrt runs ONNX Runtime's TensorRT provider: serve an exported "
                         ".onnx file (gan-export onnx), or use --device cuda")
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if device == "cuda" and not has_cuda:
        raise InputError("--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu")
    return device


class TorchBackend:
    """Runs an eval-mode nn.Module; autocast gives bf16/fp16 compute with fp32 weights."""

    kind = "torch"

    def __init__(self, module: nn.Module, spec: ModelSpec, device: str = "cpu",
                 precision: str = "fp32") -> None:
        self.device = resolve_device(device)
        if precision == "fp16" and self.device == "cpu":
            raise InputError("fp16 runs on CUDA only; on the CPU use --precision bf16 or fp32")
        self.precision = precision
        self.micro_batch = micro_batch_for(self.device)
        self.module = module.to(self.device).eval()
        self.spec = spec

    @torch.no_grad()
    def run(self, z: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(self.device)
        if self.spec.z_layout == "nchw":
            x = x[:, :, None, None]
        with torch.autocast(self.device, dtype=_DTYPES[self.precision],
                            enabled=self.precision != "fp32"):
            y = self.module(x)
        return y.float().cpu().numpy()
