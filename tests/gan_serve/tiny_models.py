"""Native generator files of any resolution, a few KB each, built in a test's temp folder; a
stand-in runner that records its passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gan_serve.arch import DCGANGenerator
from gan_serve.checkpoint import save_native
from gan_serve.errors import CheckpointError
from gan_serve.generator import Generator
from gan_serve.spec import DCGANConfig, LoadedModel, ModelSpec


def native_dcgan(path: Path, resolution: int, width: int = 2, z_dim: int = 4) -> Path:
    """An honest native file of a DCGAN with `width` channels in every hidden layer that makes
    `resolution` x `resolution` RGB images (4 * 2**layers): 1024 takes 8 layers and 5 KB."""
    layers = (resolution // 4).bit_length() - 1
    assert 4 * 2**layers == resolution, resolution
    config = DCGANConfig(z_dim=z_dim, widths=[width] * layers, channels=3)
    torch.manual_seed(resolution)
    module = DCGANGenerator(config).eval()
    spec = ModelSpec(config=config.to_dict(), z_dim=z_dim, img_resolution=resolution, channels=3)
    return save_native(module, spec, path)


# The source of a user's own small generator, as they would write it in ./my_models.py or in
# the training script itself: tests write it into temp folders (--arch my_models:Gen, z_dim 8).
MY_MODELS_PY = """
import torch
from torch import nn


class Gen(nn.Module):
    def __init__(self, z_dim=8):
        super().__init__()
        self.fc = nn.Linear(z_dim, 3 * 8 * 8)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 3, 8, 8)
"""


Z_DIM, RES = 4, 4


class RowWise:
    """A stand-in runner whose rows depend on their own latent only, whatever the batch, and
    that records the rows of every pass. `drift`: for passes below that many rows, the output
    is off by one float step (as a kernel that sums in another order at small batches is)."""

    kind, device, precision, micro_batch, auto_reason = "torch", "cpu", "fp32", 16, None
    small_passes: tuple[int, ...] = ()

    def __init__(self, drift: int = 0, fail_below: int = 0) -> None:
        self.drift, self.fail_below, self.passes = drift, fail_below, []
        self.weight = np.random.RandomState(0).randn(Z_DIM, 3 * RES * RES).astype(np.float32)

    def run(self, z: np.ndarray) -> np.ndarray:
        self.passes.append(len(z))
        if len(z) < self.fail_below:
            raise CheckpointError(f"the ONNX graph failed on latents of shape {z.shape} (fixed batch)")
        # row by row: a BLAS matmul may itself sum differently for another number of rows
        y = np.stack([np.tanh(row @ self.weight) for row in z]).reshape(len(z), 3, RES, RES)
        return np.nextafter(y, np.float32(2)) if len(z) < self.drift else y


def stand_in(runner: RowWise) -> Generator:
    """A Generator of RES x RES images whose passes run on `runner`."""
    spec = ModelSpec(arch="tests:RowWise", z_dim=Z_DIM, img_resolution=RES, channels=3)
    return Generator(LoadedModel(None, spec, "stand-in", "0" * 64, "rows"), runner)
