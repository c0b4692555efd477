"""`inspect` health verdicts, each provoked by a tiny generator with that failure."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn
from typer.testing import CliRunner

from gan_serve import health
from gan_serve.arch import DCGANGenerator
from gan_serve.generator import Generator
from gan_serve.spec import DCGANConfig


class Patterns(nn.Module):
    """A diverse 'generator': each z paints its own smooth colour field and stripes."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
        a = z[:, :6, None, None]
        r = torch.sin(3 * a[:, 0] * xx + 3 * a[:, 1] * yy)
        g = torch.cos(3 * a[:, 2] * xx - 2 * a[:, 3] * yy)
        b = torch.tanh(a[:, 4] + a[:, 5] * xx * yy)
        return torch.stack([r, g, b], 1) * 0.9


class FewModes(nn.Module):
    """Mode collapse as in seeds/000: three faces, slightly shifted."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        coarse = torch.rand(3, 3, 4, 4, generator=g) * 2 - 1  # smooth faces, not pixel noise
        self.register_buffer("modes", nn.functional.interpolate(coarse, size=32, mode="bilinear"))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.modes[z[:, :3].argmax(1)]
        shift = (z[:, 3] > 0).long()
        return torch.stack([torch.roll(o, int(s), dims=2) for o, s in zip(out, shift, strict=True)])


class Const(nn.Module):
    def __init__(self, value: float, noise: float = 0.0) -> None:
        super().__init__()
        self.value, self.noise = value, noise

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        base = torch.full((z.shape[0], 3, 32, 32), self.value)
        texture = torch.sin(torch.arange(32.0))[None, None, None] * self.noise
        return base + texture + 0.0 * z[:, :1, None, None]


def verdict(module: nn.Module) -> health.HealthReport:
    G = Generator.from_module(module, z_dim=8)
    return health.health_check(G.generate(range(256)))


def test_diverse_generator_is_healthy():
    r = verdict(Patterns())
    assert r.verdict == "healthy" and not r.problems
    assert r.clusters > 200 and r.mean_pairwise_distance > 0.1


def test_few_modes_is_mode_collapse_with_three_clusters():
    r = verdict(FewModes())
    assert "mode collapse" in r.verdict
    assert 3 <= r.clusters <= 6 and r.largest_cluster_share > 0.2
    assert "near-duplicate clusters" in r.problems[0] and "lr" in r.problems[0]


def test_generator_that_ignores_z():
    r = verdict(Const(0.2, noise=0.5))
    assert r.verdict == "generator ignores z" and r.clusters == 1


def test_black_images_name_the_normalization_cause():
    r = verdict(Const(-0.98, noise=0.02))
    assert "black images" in r.verdict and r.black_share == 1.0
    assert any("[-1, 1]" in p for p in r.problems)


def test_saturated_and_constant_images():
    sat = verdict(Const(0.0, noise=50.0))  # stripes pushed far beyond [-1, 1]
    assert "saturated images" in sat.verdict
    flat = verdict(Const(0.3))
    assert "constant images" in flat.verdict


def test_batchnorm_stats_flag_untouched_running_stats():
    g = DCGANGenerator(DCGANConfig(z_dim=8, widths=[16, 8], channels=3))
    assert all(s.untouched for s in health.batchnorm_stats(g))
    g.train()
    with torch.no_grad():
        g(torch.randn(16, 8))
    stats = health.batchnorm_stats(g)
    assert len(stats) == 2 and not any(s.untouched for s in stats)
    assert stats[0].channels == 16


def test_inspect_report_on_a_checkpoint(small_ckpt):
    G = Generator.load(small_ckpt)
    report = health.inspect_generator(G, samples=32)
    assert report.z_dim == 100 and report.img_resolution == 64 and report.channels == 3
    assert report.parameters == sum(p.numel() for p in G.module.parameters())
    assert report.health is not None and report.health.samples == 32
    json.dumps(report.to_dict())
    text = report.render()
    assert report.health.verdict in text and "widths=128-64-32-16" in text
    assert health.inspect_generator(G, samples=0).health is None


def test_thumbnail_distance_treats_small_shifts_as_near_duplicates():
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    face = np.stack([np.exp(-((xx - 0.5) ** 2 + (yy - 0.45) ** 2) * 8), xx, 1 - yy], -1)
    face = (face * 255).astype(np.uint8)
    feats = health._thumbnails(np.stack([face, np.roll(face, 2, axis=1), face[::-1]]))
    assert np.abs(feats[0] - feats[1]).mean() < health.NEAR_DUPLICATE  # 2 px shift
    assert np.abs(feats[0] - feats[2]).mean() > health.NEAR_DUPLICATE  # another picture


def _dcgan(z_dim: int = 8) -> DCGANGenerator:
    return DCGANGenerator(DCGANConfig(z_dim=z_dim, widths=[16, 8], channels=3)).eval()


def test_random_init_weights_are_untrained_not_collapse():
    # torch's default init: BatchNorm stats never updated; samples look collapsed
    report = health.inspect_generator(Generator.from_module(_dcgan(), z_dim=8), samples=64)
    assert report.health.verdict == "untrained weights", report.render()
    assert "never updated" in report.health.problems[0] and "collapse" not in report.health.verdict


def test_dcgan_init_with_updated_stats_is_still_untrained():
    # the tutorial's weights_init (BN shift 0), a forward pass in train mode, no optimizer step
    g = _dcgan().train()
    with torch.no_grad():
        g(torch.randn(32, 8))
    stats = health.batchnorm_stats(g.eval())
    assert not any(s.untouched for s in stats)
    assert health.untrained_evidence(stats) == "every BatchNorm shift still exactly 0"


def test_trained_looking_weights_that_ignore_z_are_not_called_untrained():
    g = _dcgan().train()
    with torch.no_grad():
        g(torch.randn(32, 8))
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.add_(0.1)  # an optimizer moved the shifts
        g.main[0].weight.zero_()  # ... and z no longer reaches the image
    report = health.inspect_generator(Generator.from_module(g.eval(), z_dim=8), samples=64)
    assert report.health.verdict.startswith(("generator ignores z", "constant images")), report.render()
    assert "untrained" not in report.health.verdict


def test_a_discriminator_file_is_named_as_one(tmp_path):
    from benchmarks.reference_nets import ExamplesNetD
    from gan_serve.commands.cli import app

    torch.save(ExamplesNetD(ndf=8, nc=3).state_dict(), tmp_path / "netD.pth")
    res = CliRunner().invoke(app, ["inspect", str(tmp_path / "netD.pth")])
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "error: netD.pth is a discriminator (64x64, 3 channel(s)), not a generator: pass it to "
        "--rank-with, e.g. gan-serve generate -m G.pth --rank-with netD.pth "
        "(Python: discriminator.load_discriminator)")
