"""Graph surgery before export: BatchNorm folding and BatchNorm re-calibration."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gan_serve import latents as lat
from gan_serve.backends.torch_backend import fold_batchnorm  # noqa: F401  (the runtime folds too)
from gan_serve.batchnorm import recalibrate_bn


def recalibrate_batchnorm(module: nn.Module, batches: int, z_dim: int, batch_size: int = 64) -> int:
    """Re-estimate `module`'s BN running stats in place from `batches` batches of recipe-v1
    latents (seeds 0..batches*batch_size-1): a known fix for DCGANs whose eval output looks
    worse than train mode. Deterministic. Returns the number of BN layers updated."""
    z = torch.from_numpy(np.ascontiguousarray(lat.latents_for_seeds(range(batches * batch_size), z_dim)))
    return recalibrate_bn(module, z, batch_size)  # module takes z (B, z_dim): gan_serve.seam
