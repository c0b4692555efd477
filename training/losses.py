"""GAN losses on raw D logits: non-saturating BCE (default), hinge, least squares; R1.

D returns raw scores (B,) and every loss works on them, so D needs no sigmoid and the same
D serves all three losses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str, smoothing: float = 0.0) -> torch.Tensor:
    """D's loss; one-sided label smoothing lowers only the real target (never the fake one)."""
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


def top_k(fake: torch.Tensor, share: float) -> torch.Tensor:
    """The `share` of D's logits on fakes that D rates most real (at least one): Top-k training
    (Sinha et al. 2020) feeds G's loss only these, so the worst fakes, often blends of two modes
    whose gradient points between them, do not pull G. share 1 returns `fake` itself."""
    if share >= 1.0:
        return fake
    return fake.topk(max(1, round(share * len(fake)))).values


def d_loss_floor(kind: str, smoothing: float) -> float:
    """The smallest D loss possible: with smoothing s, BCE can not go below H(1 - s)."""
    if kind != "ns" or smoothing == 0:
        return 0.0
    p = 1.0 - smoothing
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def verdict(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """D's scores as "probability real" in [0, 1] for any loss: what D(x) and D(G(z)) report.

    ns: sigmoid(logit); lsgan: the output clamped to [0, 1] (targets are 0 and 1); hinge: the
    margin [-1, 1] mapped onto [0, 1].
    """
    if kind == "hinge":
        return ((logits + 1.0) / 2.0).clamp(0.0, 1.0)
    if kind == "lsgan":
        return logits.clamp(0.0, 1.0)
    return torch.sigmoid(logits)


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma/2 * E||grad_x D(x)||^2 on real images (Mescheder et al. 2018); `real` must have
    been fed to D with requires_grad set, so no second forward pass is needed."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return 0.5 * gamma * grad.float().pow(2).reshape(len(grad), -1).sum(1).mean()
