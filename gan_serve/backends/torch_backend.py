"""Torch eager backend: fp32, bf16 autocast (CPU or CUDA), fp16 autocast (CUDA only)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..spec import ModelSpec
from . import micro_batch_for

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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
