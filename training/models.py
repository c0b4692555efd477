"""G and D for training: gan_serve's DCGAN generator and discriminator, DCGAN-initialised."""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_serve.discriminator import DCGANDiscriminator, DiscriminatorConfig
from gan_serve.spec import DCGANConfig

from .config import TrainConfig


def generator_config(cfg: TrainConfig) -> DCGANConfig:
    layers = int(math.log2(cfg.resolution // 4))  # 4x4 from z, then doubling to the resolution
    widths = [cfg.g_width * 2 ** (layers - 1 - i) for i in range(layers)]
    return DCGANConfig(z_dim=cfg.z_dim, widths=widths, channels=cfg.channels)


def discriminator_config(cfg: TrainConfig) -> DiscriminatorConfig:
    layers = int(math.log2(cfg.resolution // 4))
    widths = [cfg.d_width * 2**i for i in range(layers)]
    return DiscriminatorConfig(channels=cfg.channels, widths=widths, final_kernel=4,
                               batch_norm=[i > 0 for i in range(layers)])


@torch.no_grad()
def dcgan_init(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales (Radford et al. 2015)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.normal_(0.0, 0.02, generator=generator)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.normal_(1.0, 0.02, generator=generator)
            m.bias.zero_()
    return module


def build(cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    from gan_serve.arch import DCGANGenerator

    g = torch.Generator().manual_seed(cfg.seed)
    G = dcgan_init(DCGANGenerator(generator_config(cfg)), g)
    D = dcgan_init(DCGANDiscriminator(discriminator_config(cfg)), g)
    return G, D
