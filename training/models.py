"""G and D for training: gan_serve's DCGAN generator and discriminator, DCGAN-initialised."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

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
    return DiscriminatorConfig(channels=cfg.channels * cfg.pack, widths=widths, final_kernel=4,
                               batch_norm=[i > 0 and cfg.d_batch_norm for i in range(layers)])


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
    if cfg.spectral_norm:
        for m in list(D.modules()):
            if isinstance(m, nn.Conv2d):
                nn.utils.parametrizations.spectral_norm(m)
    return G, D


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, decay: float) -> None:
    """G_ema <- decay * G_ema + (1 - decay) * G, for the weights and the BatchNorm running
    statistics alike (counters such as num_batches_tracked are copied)."""
    for e, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        if e.is_floating_point():
            e.lerp_(b, 1.0 - decay)
        else:
            e.copy_(b)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Switch off requires_grad of `module`'s weights for a block: G's step needs gradients
    through D to its input, not D's own weight gradients (about a third of D's backward)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


@torch.no_grad()
def recalibrate_bn(G: nn.Module, latents: torch.Tensor, batch_size: int) -> nn.Module:
    """Re-estimate G's BatchNorm running statistics for its current weights: the average batch
    statistics over `latents`, run through G in train mode; returns G in eval mode.

    EMA weights never produced the running statistics they carry, and early in training the
    running statistics still remember their initial values; eval-mode samples (what gan-serve
    shows) then look nothing like G's training output.
    """
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    G.train()
    for chunk in latents.split(batch_size):
        G(chunk)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return G.eval()
