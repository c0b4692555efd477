"""Graph surgery before export: BatchNorm folding and BatchNorm re-calibration."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gan_serve import latents as lat


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a (transposed) conv in a Sequential.

    Eval-mode BN is y = (x - mean) * g / sqrt(var + eps) + b: a per-channel scale and shift
    that the conv's weight and bias absorb exactly (up to float rounding). Returns the count.
    """
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if not (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if conv.groups != 1 or bn.running_mean is None:
                continue
            scale = (bn.weight if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias if bn.affine else torch.zeros_like(scale)
            out_dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0  # ConvT: (in, out, k, k)
            shape = [1, 1, 1, 1]
            shape[out_dim] = -1
            conv.weight.mul_(scale.reshape(shape))
            old_bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
            conv.bias = nn.Parameter((old_bias - bn.running_mean) * scale + shift)
            seq[i + 1] = nn.Identity()
            folded += 1
    return folded


@torch.no_grad()
def recalibrate_batchnorm(module: nn.Module, batches: int, z_dim: int, nchw: bool,
                          batch_size: int = 64) -> int:
    """Re-estimate BN running stats from `batches` batches of recipe-v1 latents (seeds
    0..batches*batch_size-1): a known fix for DCGANs whose eval output looks worse than
    train mode. Deterministic. Returns the number of BN layers updated."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    module.train()
    for b in range(batches):
        z = lat.latents_for_seeds(range(b * batch_size, (b + 1) * batch_size), z_dim)
        x = torch.from_numpy(np.ascontiguousarray(z))
        module(x[:, :, None, None] if nchw else x)
    module.eval()
    for bn in bns:
        bn.momentum = 0.1
    return len(bns)
