"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) of every image D sees.

D judges augmented real and augmented fake images alike, and G's gradient flows through the
augmentation, so G still learns the un-augmented data while D can not memorise a small data
set. Policies (comma-separated): color (brightness, saturation, contrast), translation (up to
1/8 of the size, zero-filled), cutout (a square of half the size set to 0). Every draw comes
from the generator passed in: a pure function of (seed, step, slot), so resume replays it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> list[str]:
    """`"color,translation"` -> ["color", "translation"]; "" -> []. Raises ValueError naming
    the unknown part."""
    parts = [p.strip() for p in policy.split(",") if p.strip()]
    for p in parts:
        if p not in POLICIES:
            raise ValueError(p)
    return parts


def _rand(g: torch.Generator, x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(len(x), *shape, generator=g).to(x.device, x.dtype)


def color(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    x = x + (_rand(g, x, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(g, x, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(g, x, 1, 1, 1) + 0.5) + mean


def _grid(x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, ...]:
    b = len(x)
    return torch.meshgrid(torch.arange(b), torch.arange(h), torch.arange(w), indexing="ij")


def translation(x: torch.Tensor, g: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), generator=g)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), generator=g)
    gb, gy, gx = _grid(x, h, w)
    gy = (gy + dy + 1).clamp(0, h + 1)
    gx = (gx + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[gb.to(x.device), gy.to(x.device), gx.to(x.device)].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, g: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), generator=g)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), generator=g)
    gb, gy, gx = _grid(x, ch, cw)
    gy = (gy + oy - ch // 2).clamp(0, h - 1)
    gx = (gx + ox - cw // 2).clamp(0, w - 1)
    mask = torch.ones(b, h, w)
    mask[gb, gy, gx] = 0
    return x * mask.unsqueeze(1).to(x.device, x.dtype)


OPS = {"color": color, "translation": translation, "cutout": cutout}


def augment(x: torch.Tensor, policy: Sequence[str], g: torch.Generator) -> torch.Tensor:
    """`x` (B, C, H, W) with every op of `policy` applied, each image drawn independently."""
    for name in policy:
        x = OPS[name](x, g)
    return x
