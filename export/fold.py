"""Graph surgery before export: BatchNorm folding and BatchNorm re-calibration."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gan_serve import latents as lat
from gan_serve.backends.torch_backend import fold_batchnorm  # noqa: F401  (the runtime folds too)


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
