"""Native generator files of any resolution, a few KB each, built in a test's temp folder."""

from __future__ import annotations

from pathlib import Path

import torch

from gan_serve.arch import DCGANGenerator
from gan_serve.checkpoint import save_native
from gan_serve.spec import DCGANConfig, ModelSpec


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
