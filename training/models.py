"""G and D for training: gan_serve's DCGAN generator and discriminator, DCGAN-initialised."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from gan_serve.backends import torch_backend
from gan_serve.batchnorm import recalibrate_bn
from gan_serve.discriminator import DCGANDiscriminator, DiscriminatorConfig
from gan_serve.spec import DCGANConfig

from .config import TrainConfig
from .data import CALIBRATION_STREAM, derived_seed


def generator_config(cfg: TrainConfig) -> DCGANConfig:
    layers = int(math.log2(cfg.resolution // 4))  # 4x4 from z, then doubling to the resolution
    widths = [cfg.g_width * 2 ** (layers - 1 - i) for i in range(layers)]
    return DCGANConfig(z_dim=cfg.z_dim, widths=widths, channels=cfg.channels)


def discriminator_config(cfg: TrainConfig) -> DiscriminatorConfig:
    layers = int(math.log2(cfg.resolution // 4))
    widths = [cfg.d_width * 2**i for i in range(layers)]
    return DiscriminatorConfig(channels=cfg.channels * cfg.pack, widths=widths, final_kernel=4,
                               batch_norm=[i > 0 and cfg.d_batch_norm for i in range(layers)],
                               bias=cfg.d_bias, out_bias=cfg.d_bias)


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
    if cfg.spectral_norm:  # its power iteration starts from torch's global RNG: pin it to the seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
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
def float32_copy(source: nn.Module, fresh: nn.Module, latents: torch.Tensor, batch_size: int) -> nn.Module:
    """`source`'s weights in `fresh` (a new module of its shape) on the CPU in float32, BatchNorm
    statistics re-estimated for them on `latents` (none: as they are); eval mode. `source` is
    left alone."""
    fresh.load_state_dict({k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
                           for k, v in source.state_dict().items()})
    if len(latents):
        recalibrate_bn(fresh, latents, batch_size)
    return fresh.eval()


def served_copy(source: nn.Module, cfg: TrainConfig) -> nn.Module:
    """G `source` as gan-serve will load it: its weights in a fresh float32 DCGANGenerator, BN
    statistics re-estimated on the run's fixed latents (the same weights always give the same
    file), eval mode."""
    from gan_serve.arch import DCGANGenerator

    g = torch.Generator().manual_seed(derived_seed(cfg.seed, CALIBRATION_STREAM))
    latents = torch.randn(cfg.bn_calibration * cfg.batch_size, cfg.z_dim, generator=g)
    return float32_copy(source, DCGANGenerator(generator_config(cfg)), latents, cfg.batch_size)


def choose_precision(precision: str, channels_last: bool, device: str) -> tuple[str, bool, str]:
    """(precision, channels_last, why) for this machine. --precision auto: bf16 autocast and
    channels_last on GPUs with bf16 and on CPUs that compute bf16 in hardware (AMX or
    AVX512-BF16: about twice fp32's images/s, BENCHMARKS.md), fp32 elsewhere (emulated bf16 is
    several times slower). Any other value is taken as given."""
    if precision != "auto":
        return precision, channels_last, f"precision {precision}{' + channels_last' * channels_last}"
    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", True, "precision auto: bf16 autocast + channels_last (a GPU with bf16)"
        return "fp32", channels_last, "precision auto: fp32 (this GPU has no bf16)"
    cpu = torch.backends.cpu.get_cpu_capability()
    if torch_backend.cpu_bf16_is_native():
        return "bf16", True, (f"precision auto: bf16 autocast + channels_last (this {cpu} CPU computes "
                              "bf16 in hardware: AMX or AVX512-BF16)")
    return "fp32", channels_last, (f"precision auto: fp32 (this CPU, {cpu}, has no AMX or AVX512-BF16: "
                                   "bf16 would be emulated, several times slower)")
