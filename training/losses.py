"""GAN losses on raw D logits: non-saturating BCE (default), hinge, least squares; R1."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str, smoothing: float = 0.0) -> torch.Tensor:
    """D's loss; one-sided label smoothing lowers only the real target."""
    target = 1.0 - smoothing
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "lsgan":
        return 0.5 * ((real - target) ** 2).mean() + 0.5 * (fake**2).mean()
    return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, target))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def g_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    """G's loss: non-saturating -log D(G(z)) rather than log(1 - D(G(z))), which vanishes early."""
    if kind == "hinge":
        return -fake.mean()
    if kind == "lsgan":
        return 0.5 * ((fake - 1.0) ** 2).mean()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def r1_penalty(D: torch.nn.Module, real: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma/2 * E||grad_x D(x)||^2 on real images (Mescheder et al. 2018)."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return 0.5 * gamma * grad.pow(2).reshape(len(grad), -1).sum(1).mean()
