"""A quality score for any data, with nothing to download: the Fréchet distance between the
feature statistics of real and generated images in a fixed, randomly initialised conv network
(FID's formula, with a random network in place of Inception; why it is good enough to rank
checkpoints, and what it was measured against: TRAINING.md, "Which checkpoint is best").

Lower is better; 0 means the two feature distributions have the same mean and covariance.
It sees what FID sees in kind (blur, wrong colours, too little variety: a collapsed G has a
small covariance), not in semantics: it ranks checkpoints of one run, it is no benchmark
number to compare across data sets or papers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FEATURE_SEED = 20_26_12_02  # the network's weights: the same on every machine, every run
SIZE = 32  # images are area-resized to SIZE x SIZE before the network
WIDTHS = (32, 64, 128, 128)  # conv widths; the last three layers' pooled outputs are the features


class RandomFeatures(nn.Module):
    """Four 3x3 convolutions (stride 1, 2, 2, 2) with LeakyReLU, Kaiming-initialised from
    FEATURE_SEED; features: the spatial mean and std of the last three layers (640 numbers)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(FEATURE_SEED)
        ins = (channels, *WIDTHS[:-1])
        # nn.Conv2d's default initialisation draws from torch's global stream, which the training
        # run shares: scoring a checkpoint must not change the run that follows it.
        with torch.random.fork_rng(devices=[]):
            self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, 1 if k == 0 else 2, 1)
                                       for k, (i, o) in enumerate(zip(ins, WIDTHS, strict=True)))
        with torch.no_grad():
            for conv in self.convs:
                conv.weight.normal_(0.0, (2.0 / conv.weight[0].numel()) ** 0.5, generator=g)
                conv.bias.zero_()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) in [-1, 1] -> (N, 640)
        if x.shape[-1] != SIZE:
            x = F.interpolate(x, size=(SIZE, SIZE), mode="area")
        out = []
        for k, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), 0.2)
            if k > 0:
                out += [x.mean((2, 3)), x.std((2, 3))]
        return torch.cat(out, 1)


def feature_stats(images_u8: np.ndarray, batch: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of the features of uint8 (N, H, W, C) images."""
    net = RandomFeatures(images_u8.shape[-1]).eval()
    feats = []
    for chunk in np.array_split(images_u8, max(1, len(images_u8) // batch)):
        x = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        feats.append(net(x).double().numpy())
    f = np.concatenate(feats)
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)), via symmetric eigendecompositions."""
    (mu_a, c_a), (mu_b, c_b) = a, b
    s = _sqrt_psd(c_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(s @ c_b @ s), 0.0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(c_a) + np.trace(c_b) - 2.0 * cross)
