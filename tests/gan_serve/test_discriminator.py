"""Best-of-N with the user's discriminator: loading every D format, and ranking."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gan_serve
from gan_serve.discriminator import (
    DCGANDiscriminator,
    DiscriminatorConfig,
    check_compatible,
    load_discriminator,
    rank_seeds,
    score_images,
)
from gan_serve.errors import InputError, UnknownArchitectureError, UnsafeCheckpointError
from gan_serve.latents import format_seeds
from tests.legacy_models import ExamplesNetD, SeedDetector, randomize


def _logits(seq_module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():  # the original without its final Sigmoid
        return seq_module[:-1](x).reshape(len(x))


@pytest.mark.parametrize("make,attr,nc,layout", [
    (lambda: SeedDetector(), "model", 3, "bare"),
    (lambda: ExamplesNetD(ndf=16, nc=3), "main", 3, "bare"),
    (lambda: ExamplesNetD(ndf=8, nc=1), "main", 1, "bare"),
    (lambda: ExamplesNetD(ndf=16, nc=3), "main", 3, "seed001"),
    (lambda: ExamplesNetD(ndf=16, nc=3), "main", 3, "prefixed"),
])
def test_loaded_discriminator_reproduces_the_original_logits(tmp_path, make, attr, nc, layout):
    D = randomize(make(), seed=7)
    sd = D.state_dict()
    obj = {"bare": sd, "seed001": {"gen": {}, "dis": sd, "optim_dis": {}},
           "prefixed": {"netD": {f"module.{k}": v for k, v in sd.items()}}}[layout]
    torch.save(obj, tmp_path / "d.pth")
    ours, cfg = load_discriminator(tmp_path / "d.pth")
    assert cfg.img_resolution == 64 and cfg.channels == nc
    x = torch.rand(4, nc, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(ours(x), _logits(getattr(D, attr), x))


def test_rank_with_on_the_command_line_uses_the_generators_own_file(tmp_path):
    # seeds/001 keeps G and D in one file: --rank-with may point at the generator's file
    from typer.testing import CliRunner

    from gan_serve import images as img
    from gan_serve.cli import app
    from tests.legacy_models import ExamplesNetG

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


class Brightness(torch.nn.Module):
    """A known judge: the brighter the image, the higher the score."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))


def test_rank_keeps_the_best_scored_seeds_in_order(small_ckpt):
    G = gan_serve.load(small_ckpt)
    seeds = list(range(100, 140))
    kept, scores, _ = rank_seeds(G, Brightness(), seeds, keep=5)
    brightness = {s: G.generate([s])[0].mean() for s in seeds}
    expected = sorted(seeds, key=lambda s: (-brightness[s], s))[:5]
    assert kept == expected and list(scores) == sorted(scores, reverse=True)
    assert rank_seeds(G, Brightness(), seeds, keep=5)[0] == kept


def test_score_maps_pixels_back_to_the_output_range():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    images[1] = 255
    assert score_images(Brightness(), images).tolist() == [-1.0, 1.0]
    assert score_images(Brightness(), images, (0.0, 1.0)).tolist() == [0.0, 1.0]


def test_bad_input(legacy, tmp_path, small_ckpt):
    with pytest.raises(UnknownArchitectureError, match="not a DCGAN-family discriminator"):
        load_discriminator(legacy["examples_nc3"].path)  # a generator passed as D
    G = gan_serve.load(small_ckpt)
    small = DiscriminatorConfig(widths=[8, 16], batch_norm=[False, True])
    with pytest.raises(InputError, match="16x16"):
        check_compatible(small, G)
    with pytest.raises(InputError, match="can keep 1 to 3"):
        rank_seeds(G, DCGANDiscriminator(DiscriminatorConfig()), [1, 2, 3], keep=4)


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_pickle_that_runs_code_is_refused(tmp_path):
    (tmp_path / "d.pth").write_bytes(pickle.dumps(_Payload(tmp_path / "pwned"), protocol=2))
    with pytest.raises(UnsafeCheckpointError):
        load_discriminator(tmp_path / "d.pth")
    assert not (tmp_path / "pwned").exists()
