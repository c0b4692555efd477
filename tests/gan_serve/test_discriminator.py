"""Best-of-N with the user's discriminator: loading every D format, and ranking."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import save_file

import gan_serve
from benchmarks.reference_nets import ExamplesNetD, ExamplesNetG, randomize
from gan_serve.arch import DCGANGenerator
from gan_serve.discriminator import (
    DCGANDiscriminator,
    DiscriminatorConfig,
    check_compatible,
    load_discriminator,
    rank_seeds,
    score_images,
)
from gan_serve.errors import CheckpointError, InputError, UnknownArchitectureError, UnsafeCheckpointError
from gan_serve.generator import Generator
from gan_serve.latents import format_seeds
from gan_serve.spec import DCGANConfig


# seeds/000's discriminator, as the blog post wrote it: attribute `model`, no BatchNorm on the
# first conv, 64x64 -> 1024 x 2 x 2, then a 2x2 conv to one score.
class Detector(nn.Module):
    def __init__(self):
        super(Detector, self).__init__()  # noqa: UP008 - copied verbatim
        self.model = nn.Sequential(
            nn.Conv2d(3, 64, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(128, 256, 4, 2, 1, bias=False),
            nn.BatchNorm2d(256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(256, 512, 4, 2, 1, bias=False),
            nn.BatchNorm2d(512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(512, 1024, 4, 2, 1, bias=False),
            nn.BatchNorm2d(1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(1024, 1, 2, 1, 0, bias=False),
            nn.Sigmoid()
        )

    def forward(self, x):
        return self.model(x)


# seeds/001's first discriminator: convolutions then a Linear, not DCGAN-shaped.
class Dis(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 4, stride=2)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2)
        self.conv3 = nn.Conv2d(64, 128, 4, stride=2)
        self.conv4 = nn.Conv2d(128, 256, 4, stride=2)
        self.fc = nn.Linear(256 * 2 * 2, 1)


def _logits(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():  # the original without its final Sigmoid
        return seq[:-1](x).reshape(len(x))


def _save(D: nn.Module, layout: str, path: Path) -> Path:
    sd = D.state_dict()
    if layout == "safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        return path
    G = ExamplesNetG(ngf=8)
    obj = {
        "bare": sd,
        # seeds/001 keeps G, D and both optimizers in one file
        "seed001": {"gen": G.state_dict(), "optim_gen": torch.optim.Adam(G.parameters()).state_dict(),
                    "dis": sd, "optim_dis": torch.optim.Adam(D.parameters()).state_dict()},
        "dataparallel": {f"module.{k}": v for k, v in sd.items()},
        "compiled": {"netD": {f"module._orig_mod.{k}": v for k, v in sd.items()}},
    }[layout]
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("make,attr,nc,layout", [
    (lambda: Detector(), "model", 3, "bare"),
    (lambda: ExamplesNetD(ndf=16, nc=3), "main", 3, "bare"),
    (lambda: ExamplesNetD(ndf=8, nc=1), "main", 1, "bare"),
    (lambda: ExamplesNetD(ndf=16, nc=3), "main", 3, "seed001"),
    (lambda: ExamplesNetD(ndf=8, nc=3), "main", 3, "dataparallel"),
    (lambda: ExamplesNetD(ndf=8, nc=1), "main", 1, "compiled"),
    (lambda: ExamplesNetD(ndf=8, nc=3), "main", 3, "safetensors"),
])
def test_loaded_discriminator_reproduces_the_original_logits(tmp_path, make, attr, nc, layout):
    D = randomize(make(), seed=7)
    ours, cfg = load_discriminator(_save(D, layout, tmp_path / f"d.{layout}"))
    assert (cfg.img_resolution, cfg.channels) == (64, nc)
    assert cfg.batch_norm[0] is False and all(cfg.batch_norm[1:])  # both seeds: none on conv 1
    assert cfg.final_kernel == (2 if isinstance(D, Detector) else 4)
    assert not ours.training and next(ours.parameters()).dtype == torch.float32
    x = torch.rand(4, nc, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(ours(x), _logits(getattr(D, attr), x))


def test_gan_train_state_file_loads_its_own_discriminator(tmp_path):
    cfg = DiscriminatorConfig(widths=[8, 16, 32], batch_norm=[False, True, True], bias=True, out_bias=True)
    D = randomize(DCGANDiscriminator(cfg), seed=3)
    G = ExamplesNetG(ngf=8)
    torch.save({"step": 500, "G": G.state_dict(), "D": D.state_dict(), "G_ema": G.state_dict(),
                "opt_d": torch.optim.Adam(D.parameters()).state_dict(), "config": "{}"},
               tmp_path / "state.pt")
    ours, loaded_cfg = load_discriminator(tmp_path / "state.pt")
    assert loaded_cfg == cfg and loaded_cfg.img_resolution == 32
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(ours(x), D(x))


def test_rank_with_on_the_command_line_uses_the_generators_own_file(tmp_path):
    # seeds/001 keeps G and D in one file: --rank-with may point at the generator's file
    from typer.testing import CliRunner

    from gan_serve import images as img
    from gan_serve.commands.cli import app

    G0, D0 = randomize(ExamplesNetG(ngf=8), seed=1), randomize(ExamplesNetD(ndf=8), seed=2)
    both = tmp_path / "checkpoint0227-99.pth"
    torch.save({"gen": G0.state_dict(), "dis": D0.state_dict(), "optim_gen": {}, "optim_dis": {}}, both)
    out = tmp_path / "best.png"
    res = CliRunner().invoke(app, ["generate", "-m", str(both), "--rank-with", str(both),
                                   "--candidates", "40", "--n", "4", "-o", str(out)])
    assert res.exit_code == 0, res.output
    G = gan_serve.load(both)
    kept, _, images = rank_seeds(G, load_discriminator(both)[0], list(range(40)), keep=4)
    assert np.array_equal(images, G.generate(kept))
    meta = img.read_metadata(out.read_bytes())
    assert meta["gan_serve.seeds"] == format_seeds(kept)
    assert meta["gan_serve.ranked_from"] == "0-39"
    assert np.array_equal(np.asarray(Image.open(out)), G.grid(kept))


def _tiny_generator() -> Generator:
    """A 16x16 RGB DCGAN generator with random weights."""
    module = randomize(DCGANGenerator(DCGANConfig(z_dim=8, widths=[16, 8], channels=3)), seed=4)
    return Generator.from_module(module, z_dim=8)


def test_rank_keeps_the_seeds_a_real_discriminator_scores_best(tmp_path):
    G = _tiny_generator()
    cfg = DiscriminatorConfig(widths=[8, 16], batch_norm=[False, True])
    torch.save(randomize(DCGANDiscriminator(cfg), seed=5).state_dict(), tmp_path / "netD.pth")
    D, d_cfg = load_discriminator(tmp_path / "netD.pth")
    check_compatible(d_cfg, G)
    seeds = list(range(1000, 1030))
    kept, scores, images = rank_seeds(G, D, seeds, keep=6)
    alone = {s: score_images(D, G.generate([s]))[0] for s in seeds}  # brute force, one at a time
    assert kept == sorted(seeds, key=lambda s: (-alone[s], s))[:6]
    assert scores.tolist() == [alone[s] for s in kept]
    assert np.array_equal(images, G.generate(kept))
    again = rank_seeds(G, D, seeds, keep=6)
    assert again[0] == kept and np.array_equal(again[1], scores)
    assert rank_seeds(G, D, seeds, keep=2)[0] == kept[:2]


class Brightness(nn.Module):
    """A known judge: the brighter the image, the higher the score."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))


def test_rank_keeps_the_brightest_seeds_in_order(small_ckpt):
    G = gan_serve.load(small_ckpt)
    seeds = list(range(100, 140))
    kept, scores, _ = rank_seeds(G, Brightness(), seeds, keep=5)
    brightness = {s: G.generate([s])[0].mean() for s in seeds}
    assert kept == sorted(seeds, key=lambda s: (-brightness[s], s))[:5]
    assert list(scores) == sorted(scores, reverse=True)


class _Flat:
    """A stand-in G whose image of seed s is flat grey at level[s]."""

    spec = SimpleNamespace(output_range=(-1.0, 1.0))

    def __init__(self, level: dict[int, int]) -> None:
        self.level = level

    def generate(self, seeds, truncation_psi=1.0, progress=None):
        return np.stack([np.full((4, 4, 3), self.level[s], np.uint8) for s in seeds])


class _DarkIsNaN(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.where(m < -0.9, torch.nan, m)


def test_ties_go_to_the_lower_seed_and_nan_ranks_last():
    G = _Flat({7: 200, 3: 200, 5: 10, 1: 100, 9: 200})
    assert rank_seeds(G, Brightness(), [7, 3, 5, 1, 9], keep=4)[0] == [3, 7, 9, 1]
    kept, scores, _ = rank_seeds(G, _DarkIsNaN(), [5, 1, 7], keep=3)
    assert kept == [7, 1, 5] and np.isnan(scores[2])
    with pytest.raises(CheckpointError, match="NaN"):
        rank_seeds(_Flat({5: 0}), _DarkIsNaN(), [5], keep=1)


def test_score_maps_pixels_back_to_the_output_range():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    images[1] = 255
    assert score_images(Brightness(), images).tolist() == [-1.0, 1.0]
    assert score_images(Brightness(), images, (0.0, 1.0)).tolist() == [0.0, 1.0]
    assert score_images(Brightness(), images, batch_size=1).tolist() == [-1.0, 1.0]
    for bad in (images.astype(np.float32), images[:0], images[0]):
        with pytest.raises(InputError, match="uint8 images"):
            score_images(Brightness(), bad)


def test_bad_input(tmp_path, small_ckpt):
    with pytest.raises(UnknownArchitectureError, match="it is a DCGAN generator.*Supported"):
        load_discriminator(small_ckpt)  # a generator passed as D
    G = gan_serve.load(small_ckpt)
    with pytest.raises(UnknownArchitectureError, match="gan-serve generator checkpoint"):
        load_discriminator(G.save(tmp_path / "g.safetensors"))
    torch.save(Dis().state_dict(), tmp_path / "dis.pth")
    with pytest.raises(UnknownArchitectureError, match="fc.weight .* neither a Conv2d"):
        load_discriminator(tmp_path / "dis.pth")
    torch.save({"gen": {"main.0.weight": torch.zeros(1)}, "epoch": 3}, tmp_path / "g_only.pth")
    with pytest.raises(CheckpointError, match=r"top level: \['epoch', 'gen'\].*dis, netD"):
        load_discriminator(tmp_path / "g_only.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "dis.pth").read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_discriminator(tmp_path / "cut.pth")

    small = DiscriminatorConfig(widths=[8, 16], batch_norm=[False, True])
    with pytest.raises(InputError, match="16x16 images with 3 channel.*64x64 with 3"):
        check_compatible(small, G)
    with pytest.raises(InputError, match="1 channel.*with 3"):
        check_compatible(DiscriminatorConfig(channels=1), G)
    with pytest.raises(InputError, match=r"keep \(of 3 candidates\) must be an integer from 1 to 3"):
        rank_seeds(G, Brightness(), [1, 2, 3], keep=4)
    with pytest.raises(InputError, match="from 1 to 3, got 0"):
        rank_seeds(G, Brightness(), [1, 2, 3], keep=0)


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_that_runs_code_is_refused(tmp_path, writer):
    target, path = tmp_path / "pwned", tmp_path / "netD.pth"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(_Payload(target), protocol=2))
    else:
        torch.save({"dis": _Payload(target)}, path)
    with pytest.raises(UnsafeCheckpointError, match="nothing in it was run"):
        load_discriminator(path)
    assert not target.exists()


def test_netd_saved_under_a_generic_key(tmp_path):
    D = randomize(ExamplesNetD(ndf=8), seed=3)
    torch.save({"model_state_dict": D.state_dict(), "epoch": 7}, tmp_path / "netD.pth")
    ours, cfg = load_discriminator(tmp_path / "netD.pth")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(ours(x), D.main[:-1](x).reshape(2))


# -- sizes: a discriminator file gets the generator's limits, checked before any layer exists --
def test_an_expanded_discriminator_is_refused_by_name_in_one_line(tmp_path, small_ckpt):
    """The attack run's 230 GB case: widths of 60,000 declared by 2 KB of stride-0 tensors."""
    from typer.testing import CliRunner

    from gan_serve.commands.cli import app

    one, w = torch.zeros(1), 60_000
    sd = {"main.0.weight": one.expand(w, 3, 4, 4), "main.2.weight": one.expand(w, w, 4, 4),
          "main.5.weight": one.expand(1, w, 4, 4)}
    torch.save(sd, tmp_path / "netD.pth")
    with pytest.raises(CheckpointError, match="'main.0.weight' is a stride-0 expansion"):
        load_discriminator(tmp_path / "netD.pth")
    res = CliRunner().invoke(app, ["generate", "-m", str(small_ckpt), "--rank-with",
                                   str(tmp_path / "netD.pth"), "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert "stride-0 expansion" in res.stderr and not (tmp_path / "g.png").exists()


@pytest.mark.parametrize(("sd", "words"), [
    ({"main.0.weight": torch.zeros(16385, 1, 4, 4), "main.2.weight": torch.zeros(1, 16385, 2, 2)},
     "widths [16385] exceed the limit of 16384"),
    ({**{f"main.{i}.weight": torch.zeros(1, 1, 4, 4) for i in range(0, 26, 2)},
      "main.26.weight": torch.zeros(1, 1, 4, 4)}, "13 hidden layers; the limit is 12"),
    ({"main.0.weight": torch.zeros(4, 3, 4, 4), "main.2.weight": torch.zeros(1, 4, 65, 65)},
     "final_kernel 65 exceeds the limit of 64"),
    ({"main.0.weight": torch.zeros(1, 3, 4, 4),
      **{f"main.{i}.weight": torch.zeros(1, 1, 4, 4) for i in range(2, 14, 2)},
      "main.14.weight": torch.zeros(1, 1, 64, 64)}, "judges 8192x8192 images; the limit is 4096"),
])
def test_honest_discriminators_beyond_the_generator_limits_are_refused(tmp_path, sd, words):
    torch.save(sd, tmp_path / "netD.pth")
    with pytest.raises(UnknownArchitectureError, match="refused before building it") as err:
        load_discriminator(tmp_path / "netD.pth")
    assert words in str(err.value)


def test_a_discriminator_layer_may_not_hold_more_than_the_largest_image():
    with pytest.raises(InputError, match="values per image"):  # 512 x 1024^2 per image
        DiscriminatorConfig(channels=3, widths=[512, 8, 8, 8, 8, 8, 8, 8, 8],
                            batch_norm=[False] * 9, final_kernel=8)
    assert DiscriminatorConfig(channels=3, widths=[32, 64, 128, 256, 512, 512, 512, 512],
                               batch_norm=[False] * 8, final_kernel=4).img_resolution == 1024
