"""DCGAN-family discriminators: inference from a state dict, loading, and best-of-N ranking.

`gan-serve generate --rank-with netD.pth --candidates 512 --n 16` scores 512 candidate
images with the user's own trained D and keeps the 16 it likes best. D sees the quantized
uint8 images (what the user gets), mapped back to the generator's output range.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import latents as lat
from .arch import chain_state_dict, conv_chain, describe_found
from .checkpoint import (
    DISCRIMINATOR_KEYS,
    find_state_dict,
    load_strict,
    read_safetensors,
    safe_torch_load,
    sniff,
    strip_prefixes,
)
from .errors import CheckpointError, InputError, UnknownArchitectureError


@dataclass
class DiscriminatorConfig:
    channels: int = 3  # input image channels
    widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])  # hidden conv outputs
    final_kernel: int = 4  # last conv: (final_kernel x final_kernel) map -> one score
    batch_norm: list[bool] = field(default_factory=lambda: [False, True, True, True])  # per layer
    bias: bool = False  # bias in the hidden convolutions
    out_bias: bool = False  # bias in the final convolution
    leaky_slope: float = 0.2  # LeakyReLU slope (the DCGAN paper's; weights cannot tell)

    @property
    def img_resolution(self) -> int:
        return self.final_kernel * 2 ** len(self.widths)

    def to_dict(self) -> dict:
        return asdict(self)


class DCGANDiscriminator(nn.Module):
    """Conv(4, 2, 1) [+ BatchNorm] + LeakyReLU per hidden layer, then one score per image."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        in_ch = config.channels
        for width, bn in zip(config.widths, config.batch_norm, strict=True):
            layers.append(nn.Conv2d(in_ch, width, 4, 2, 1, bias=config.bias))
            if bn:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(config.leaky_slope, inplace=True))
            in_ch = width
        layers.append(nn.Conv2d(in_ch, 1, config.final_kernel, 1, 0, bias=config.out_bias))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw logits (B,): no sigmoid, so any loss can be used and ranking keeps its order."""
        return self.main(x).reshape(x.shape[0], -1).mean(1)


def infer_discriminator(sd: dict[str, torch.Tensor]) -> tuple[DiscriminatorConfig, dict[str, torch.Tensor]]:
    """Read a DCGAN discriminator's config from its state dict; map keys to DCGANDiscriminator's."""
    def fail(why: str) -> UnknownArchitectureError:
        return UnknownArchitectureError(
            f"not a DCGAN-family discriminator ({why}); found {describe_found(sd)}. Supported: "
            "a chain of Conv2d(k=4, s=2, p=1) layers with optional BatchNorm2d, ending in one "
            "Conv2d to a single score (seed-style `model`, pytorch/examples `main`)")

    convs = conv_chain(sd, "Conv2d", fail)
    for prev, cur in zip(convs, convs[1:], strict=False):
        if cur["w"].shape[1] != prev["w"].shape[0]:
            raise fail(f"{cur['name']} takes {cur['w'].shape[1]} channels but gets {prev['w'].shape[0]}")
    hidden, last = convs[:-1], convs[-1]
    if any(tuple(c["w"].shape[2:]) != (4, 4) for c in hidden):
        raise fail("hidden convolutions are not 4x4")
    if last["w"].shape[0] != 1 or last["w"].shape[2] != last["w"].shape[3] or last["bn"] is not None:
        raise fail(f"the last layer {last['name']} {tuple(last['w'].shape)} is not a single-score conv")
    if len({c["b"] is not None for c in hidden}) > 1:
        raise fail("bias on some hidden layers but not others")
    config = DiscriminatorConfig(
        channels=int(convs[0]["w"].shape[1]), widths=[int(c["w"].shape[0]) for c in hidden],
        final_kernel=int(last["w"].shape[2]), batch_norm=[c["bn"] is not None for c in hidden],
        bias=hidden[0]["b"] is not None, out_bias=last["b"] is not None,
    )
    return config, chain_state_dict(convs)


def load_discriminator(path: str | Path) -> tuple[nn.Module, DiscriminatorConfig]:
    """Load a discriminator (bare state dict, or under 'dis', 'netD', ...) in eval mode."""
    path = Path(path)
    if sniff(path) == "safetensors":
        obj: object = read_safetensors(path)[0]
    else:
        obj = safe_torch_load(path)
    found = find_state_dict(obj, DISCRIMINATOR_KEYS)
    if found is None:
        top = sorted(map(str, obj))[:12] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"no discriminator weights found in {str(path)!r} (top level: {top}); expected a "
            f"state dict, or a dict holding one under one of {', '.join(DISCRIMINATOR_KEYS)}")
    config, sd = infer_discriminator(strip_prefixes(found[0]))
    D = DCGANDiscriminator(config)
    load_strict(D, sd, f"discriminator in {path.name}")
    return D.float().eval(), config


def check_compatible(config: DiscriminatorConfig, G: object) -> None:
    """D must judge images of G's size and channels."""
    g_res, g_ch = G.img_resolution, G.channels  # type: ignore[attr-defined]
    if (config.img_resolution, config.channels) != (g_res, g_ch):
        raise InputError(
            f"the discriminator judges {config.img_resolution}x{config.img_resolution} images "
            f"with {config.channels} channel(s), but the generator makes {g_res}x{g_res} with "
            f"{g_ch}; pass the discriminator trained with this generator")


@torch.no_grad()
def score_images(D: nn.Module, images: np.ndarray, output_range: Sequence[float] = (-1.0, 1.0),
                 batch_size: int = 64) -> np.ndarray:
    """D's logits for uint8 (N, H, W, C) images, mapped back to the generator's range."""
    lo, hi = float(output_range[0]), float(output_range[1])
    scores = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
        x = x.permute(0, 3, 1, 2).float() / 255.0 * (hi - lo) + lo
        scores.append(D(x).float().numpy())
    return np.concatenate(scores)


def rank_seeds(G: object, D: nn.Module, seeds: Sequence[int], keep: int,
               truncation_psi: float = 1.0, progress: Callable[[int], None] | None = None,
               ) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The `keep` seeds whose images D scores highest, best first (ties: lower seed first),
    with their scores and their images (so nothing is generated twice)."""
    seeds = lat.check_seeds(seeds)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= len(seeds):
        raise InputError(f"can keep 1 to {len(seeds)} of {len(seeds)} candidates, not {keep!r}")
    images = G.generate(seeds, truncation_psi, progress=progress)  # type: ignore[attr-defined]
    scores = score_images(D, images, G.spec.output_range)  # type: ignore[attr-defined]
    order = sorted(range(len(seeds)), key=lambda i: (-scores[i], seeds[i]))[:keep]
    return [seeds[i] for i in order], scores[order], images[order]
