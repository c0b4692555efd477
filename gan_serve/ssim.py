"""SSIM and its multi-scale mean in torch, for projection's loss and its reported figures: a
loss that needs no downloaded weights (StyleGAN's projector uses VGG/LPIPS weights).

Images are float (B, C, H, W) in [0, 1]. The window is Wang et al.'s 11x11 Gaussian (sigma 1.5),
narrowed to fit small images; the convolution is "valid" (no padding), as the reference code does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

C1, C2 = 0.01**2, 0.03**2  # Wang et al.'s constants for a dynamic range of 1
WINDOW, SIGMA = 11, 1.5
MIN_SCALE_SIDE = 16  # a scale smaller than this holds too few windows to say much


def _taps(side: int, dtype: torch.dtype) -> torch.Tensor:
    """The 1-D Gaussian (k,), k = 11 or the largest odd size that fits `side`."""
    k = max(1, min(WINDOW, side if side % 2 else side - 1))
    x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return (g / g.sum()).to(dtype)


def _band(g: torch.Tensor, n: int) -> torch.Tensor:
    """(n - k + 1, n): row i holds the taps `g` at columns i..i+k-1 (a valid 1-D convolution)."""
    k = len(g)
    band = torch.zeros(n - k + 1, n, dtype=g.dtype, device=g.device)
    for j in range(k):
        band.diagonal(j).copy_(g[j].expand(n - k + 1))
    return band


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image (B,) of x against y, both (B, C, H, W) in [0, 1]."""
    b, c = x.shape[:2]
    g = _taps(min(x.shape[-2:]), x.dtype).to(x.device)
    # the five maps blurred at once, the 2-D Gaussian as two banded matrix products ("valid":
    # (H - k + 1) x H), which a CPU runs far faster than a depthwise convolution
    maps = torch.cat([x, y, x * x, y * y, x * y], 1)
    maps = _band(g, maps.shape[-2]) @ maps @ _band(g, maps.shape[-1]).T
    mx, my, xx, yy, xy = maps.split(c, 1)
    vx, vy, cov = xx - mx * mx, yy - my * my, xy - mx * my
    num = (2 * mx * my + C1) * (2 * cov + C2)
    den = (mx * mx + my * my + C1) * (vx + vy + C2)
    return (num / den).reshape(b, -1).mean(1)


def multiscale_ssim(x: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Mean of SSIM at full, half and quarter size (as many of `scales` as keep a side of 16 or
    more; always the first) per image (B,). A mean instead of MS-SSIM's product of powers: its
    gradient stays finite where one scale's SSIM is near zero or negative, as it is at a start."""
    total, used = ssim(x, y), 1
    while used < scales and min(x.shape[-2:]) // 2 >= MIN_SCALE_SIDE:
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        total, used = total + ssim(x, y), used + 1
    return total / used
