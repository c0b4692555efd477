"""BatchNorm re-calibration, shared by gan-train (every served checkpoint) and gan-export
(--recalibrate-bn): one implementation, run on a module the caller owns."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def recalibrate_bn(module: nn.Module, latents: torch.Tensor, batch_size: int) -> int:
    """Re-estimate `module`'s BatchNorm running statistics in place for its current weights:
    the average batch statistics over `latents`, run through it in train mode, `batch_size` at a
    time. Leaves it in eval mode with its BN momenta as they were; returns the BN layer count.

    EMA weights never produced the running statistics they carry, and early in training the
    running statistics still remember their initial values: eval-mode samples (what gan-serve
    shows) then look nothing like the generator's training output. Deterministic.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    module.train()
    for chunk in latents.split(batch_size):
        module(chunk)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    module.eval()
    return len(norms)
