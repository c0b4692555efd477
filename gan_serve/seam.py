"""The model seam: every torch generator gan_serve holds takes z as (B, z_dim).

Generators differ in how they want z: DCGAN-style ones as a 1x1 image (B, z_dim, 1, 1),
others flat (B, z_dim) (`ModelSpec.z_layout`). Loading wraps a module once (`takes_flat_z`),
so backends, export and the HTTP layer always pass (B, z_dim). `as_layout` is the one
reshape; being a reshape rather than a branch on `z.dim()`, a traced (TorchScript) module
keeps accepting both (B, z_dim) and (B, z_dim, 1, 1).
"""

from __future__ import annotations

import torch
from torch import nn

from .spec import ModelSpec


def as_layout(z: torch.Tensor, z_dim: int, layout: str) -> torch.Tensor:
    """z (B, z_dim) or (B, z_dim, 1, 1) -> (B, z_dim, 1, 1) for layout "nchw", (B, z_dim) for "flat"."""
    return z.reshape(z.shape[0], z_dim, 1, 1) if layout == "nchw" else z.reshape(z.shape[0], z_dim)


class FlatZ(nn.Module):
    """`net` fed z in its own layout, whichever of (B, z_dim) and (B, z_dim, 1, 1) it is given."""

    def __init__(self, net: nn.Module, z_dim: int, layout: str) -> None:
        super().__init__()
        self.net, self.z_dim, self.layout = net, z_dim, layout

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(as_layout(z, self.z_dim, self.layout))


def takes_flat_z(module: nn.Module, spec: ModelSpec) -> nn.Module:
    """`module` as the rest of gan_serve calls it, z (B, z_dim): the built-in DCGANGenerator
    takes that already; any other class is wrapped in FlatZ with the layout its probe found."""
    if spec.arch == "dcgan" or isinstance(module, FlatZ):
        return module
    return FlatZ(module, spec.z_dim, spec.z_layout)


def unwrap(module: nn.Module) -> nn.Module:
    """The user's own module inside the seam: the one whose state dict is saved."""
    return module.net if isinstance(module, FlatZ) else module
