"""Reference nets: generator and discriminator classes exactly as users wrote them, which the
benchmarks time and the tests save as legacy checkpoints (gan_serve.legacy reads them).

`SeedGenerator` is seeds/000's Generator (attribute `model`, widths 1024-512-256-128),
`ExamplesNetG` the pytorch/examples / DCGAN tutorial netG (attribute `main`, any ngf, nc),
`ExamplesNetD` its netD, `FcGen` seeds/001's first Gen (a Linear then convolutions, output
x/2+0.5 in [0, 1]): not DCGAN-shaped, so it loads only with
--arch benchmarks.reference_nets:FcGen. `randomize` and `spread_output` give any of them
weights whose images mean something (no download, no training).
"""

from __future__ import annotations

import torch
from torch import nn


class SeedGenerator(nn.Module):
    def __init__(self, z_dim: int = 100) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.ConvTranspose2d(z_dim, 1024, 4, 1, 0, bias=False),
            nn.BatchNorm2d(1024),
            nn.ReLU(True),
            nn.ConvTranspose2d(1024, 512, 4, 2, 1, bias=False),
            nn.BatchNorm2d(512),
            nn.ReLU(True),
            nn.ConvTranspose2d(512, 256, 4, 2, 1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(True),
            nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(True),
            nn.ConvTranspose2d(128, 3, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)


class ExamplesNetG(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.ngpu = 1
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class FcGen(nn.Module):
    def __init__(self, z_dim: int = 100) -> None:
        super().__init__()
        self.fc = nn.Linear(z_dim, 32 * 16 * 16)
        self.upsamp1 = nn.ConvTranspose2d(32, 128, 4, stride=2)
        self.conv1 = nn.Conv2d(128, 128, 4)
        self.upsamp2 = nn.ConvTranspose2d(128, 128, 4, stride=2)
        self.conv2 = nn.Conv2d(128, 64, 4)
        self.conv3 = nn.Conv2d(64, 3, 4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc(x)).view(-1, 32, 16, 16)
        x = torch.relu(self.conv1(self.upsamp1(x)))
        x = torch.relu(self.conv2(self.upsamp2(x)))
        return torch.tanh(self.conv3(x)) / 2 + 0.5


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """DCGAN init plus non-trivial BatchNorm running stats, so eval mode matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, 0.02, generator=g)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.02, generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.1, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
                m.running_mean.normal_(0.0, 0.05, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.num_batches_tracked.fill_(100)
    return module.eval()


class ExamplesNetD(nn.Module):
    """The pytorch/examples netD (attribute `main`), any ndf and nc."""

    def __init__(self, ndf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


@torch.no_grad()
def spread_output(module: nn.Module, z_dim: int, flat: bool = False) -> nn.Module:
    """Scale the last layer so outputs fill the tanh range like a trained model's, instead of
    the near-constant grey of a fresh init: pixel-level comparisons then mean something."""
    last = [m for m in module.modules() if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d))][-1]
    z = torch.randn(64, z_dim, generator=torch.Generator().manual_seed(0))
    pre = {}
    hook = last.register_forward_hook(lambda m, i, o: pre.setdefault("o", o))
    module(z if flat else z[:, :, None, None])
    hook.remove()
    last.weight.mul_(0.8 / pre["o"].std())
    if last.bias is not None:
        last.bias.mul_(0.8 / pre["o"].std())
    return module
