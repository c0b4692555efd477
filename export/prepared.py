"""Loading a checkpoint for export: the fp32 reference, and the module that gets exported."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from gan_serve.errors import InputError
from gan_serve.generator import Generator
from gan_serve.spec import ModelSpec

from .fold import fold_batchnorm, recalibrate_batchnorm


@dataclass
class Prepared:
    reference: Generator  # torch fp32 eager: what every artifact is verified against
    module: nn.Module  # a copy, BN folded and cast as asked, fp32 in and out
    spec: ModelSpec
    precision: str  # "fp32" or "fp16"
    source_sha256: str
    name: str  # the checkpoint's stem


class ZToImages(nn.Module):
    """The exported contract: z float32 -> images (B, C, H, W) float32. `module` is the loaded
    one (gan_serve.seam), so z may be (B, z_dim) or, in TorchScript, (B, z_dim, 1, 1)."""

    def __init__(self, module: nn.Module, fp16: bool) -> None:
        super().__init__()
        self.module, self.fp16 = module, fp16

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.module(z.half() if self.fp16 else z).float()


def prepare(G: Generator, fp16: bool = False, fold_bn: bool = False,
            recalibrate_bn: int = 0) -> Prepared:
    """Copy G's torch module and make it ready to export (G must run on the torch backend)."""
    if G.runner.kind != "torch":
        raise InputError(f"export needs a checkpoint (.pth, .pt, .safetensors), not a {G.backend} artifact")
    if recalibrate_bn < 0:
        raise InputError(f"--recalibrate-bn takes a number of batches >= 0, got {recalibrate_bn}")
    module = copy.deepcopy(G.module).cpu().float().eval()
    if recalibrate_bn:  # on the copy: the caller's model stays as it was
        if not recalibrate_batchnorm(module, recalibrate_bn, G.z_dim):
            raise InputError("--recalibrate-bn: this model has no BatchNorm layers")
        G = Generator(replace(G.loaded, module=copy.deepcopy(module)))  # the reference to verify against
    if fold_bn:
        fold_batchnorm(module)
    if fp16:
        module = module.half()
    reference = G
    if G.runner.device == "cpu" and G.runner.precision != "fp32":  # e.g. bf16, auto's pick on AMX
        reference = Generator(G.loaded)  # artifacts are checked against fp32 eager
    return Prepared(
        reference=reference, module=ZToImages(module, fp16).eval(), spec=G.spec,
        precision="fp16" if fp16 else "fp32", source_sha256=G.loaded.sha256, name=G.loaded.name,
    )


def default_output(name: str, fp16: bool, suffix: str, out: Path | None) -> Path:
    """`g_epoch_85.onnx`, `g_epoch_85.fp16.onnx`, ... in the current folder unless -o is given."""
    return out if out is not None else Path(f"{name}{'.fp16' if fp16 else ''}{suffix}")
