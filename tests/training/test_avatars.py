"""builtin:avatars: deterministic renders of 240 modes, a decoder that reads them back and
rejects what is not a faithful rendering, and the mode-coverage metric built on it."""

from __future__ import annotations

import io
import itertools
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from torch import nn

from gan_serve.generator import Generator
from gan_serve.images import read_metadata
from training import avatars as av
from training.avatars import renderer as rd


def renders(indices) -> np.ndarray:
    return np.stack([av.render(int(i)) for i in indices])


def same_nuisance(index: int, other: av.Attributes) -> np.ndarray:
    """What item `index` would look like with the attributes `other` (same position and shade)."""
    nz = av.nuisance(index)
    cover = rd.template(other.style, nz.jx, nz.jy, nz.scale).reshape(-1, len(rd.LAYERS))
    rgb = np.floor((cover.astype(np.float32) @ rd.layer_colors(other, nz.shade) + 8) / 16)
    return rgb.reshape(64, 64, 3).astype(np.uint8)


@pytest.fixture(scope="module")
def every_mode_ten_times() -> np.ndarray:
    return renders(range(10 * av.N_MODES))


def test_240_modes_from_four_factors_each_equally_common():
    assert av.N_MODES == len(av.BACKGROUNDS) * len(av.HAIR) * len(av.STYLES) * len(av.EYES) == 240
    assert [av.attributes(i).mode for i in range(2 * av.N_MODES)] == list(range(av.N_MODES)) * 2
    assert all(av.Attributes.from_mode(m).mode == m for m in range(av.N_MODES))
    with pytest.raises(ValueError, match="non-negative integer"):
        av.render(-1)


def test_palettes_are_far_enough_apart_that_blends_fail():
    worst_shade = rd.SHADE * math.sqrt(3)  # shading moves a colour this far at most
    need = 2 * (av.MATCH + worst_shade)  # a 50/50 blend then lies beyond MATCH from both
    for palette in (av.BACKGROUNDS, av.HAIR, av.EYES):
        for a, b in itertools.combinations(palette.values(), 2):
            assert np.linalg.norm(np.subtract(a, b)) > need, (a, b)
    for hair, bg in itertools.product(av.HAIR.values(), [*av.BACKGROUNDS.values(), rd.FIXED[rd.SHIRT]]):
        assert np.linalg.norm(np.subtract(hair, bg)) > need, (hair, bg)  # silhouettes stand out


def test_renders_are_deterministic_and_vary_within_a_mode():
    first = [av.render(i).tobytes() for i in (0, 17, 239, 10**12)]
    rd._sparse.cache_clear()  # drawn again from scratch: still the same bytes
    assert [av.render(i).tobytes() for i in (0, 17, 239, 10**12)] == first
    one_mode = [av.render(5 + k * av.N_MODES) for k in range(8)]
    assert len({im.tobytes() for im in one_mode}) == 8  # position, size and shade vary
    assert {av.attributes(5 + k * av.N_MODES) for k in range(8)} == {av.attributes(5)}


@pytest.mark.parametrize("resolution", av.RESOLUTIONS)
def test_every_resolution_is_drawn_natively(resolution):
    im = av.render(3, resolution)
    assert im.shape == (resolution, resolution, 3) and im.dtype == np.uint8
    small = np.asarray(Image.fromarray(im).resize((64, 64), Image.Resampling.BOX))
    assert np.abs(small.astype(int) - av.render(3)).mean() < 12  # the same picture
    with pytest.raises(ValueError, match="32, 64 or 128"):
        av.render(3, 48)


def test_decoder_reads_every_mode_back(every_mode_ten_times):
    decoded = av.decode(every_mode_ten_times)
    truth = [av.attributes(i) for i in range(len(every_mode_ten_times))]
    assert np.mean([d.attributes == t for d, t in zip(decoded, truth, strict=True)]) >= 0.99
    assert np.mean([d.high_quality for d in decoded]) >= 0.99
    assert max(d.distance for d in decoded) < av.MATCH


def test_mild_degradations_still_decode(every_mode_ten_times):
    """A generator's samples are never pixel-exact: blur, noise and a sub-pixel shift are fine."""
    ims = every_mode_ten_times[::8]
    truth = np.array([av.attributes(i).mode for i in range(0, len(every_mode_ten_times), 8)])
    noisy = np.clip(ims + np.random.RandomState(0).normal(0, 8, ims.shape), 0, 255).astype(np.uint8)

    def pil(f):
        return np.stack([np.asarray(f(Image.fromarray(im))) for im in ims])

    blurred = pil(lambda im: im.filter(ImageFilter.GaussianBlur(0.7)))
    shifted = pil(lambda im: im.transform(im.size, Image.Transform.AFFINE, (1, 0, 0.5, 0, 1, 0.5),
                                          Image.Resampling.BILINEAR))
    for degraded in (noisy, blurred, shifted):
        decoded = av.decode_arrays(degraded)
        assert np.mean(decoded.modes == truth) >= 0.99
        assert decoded.high_quality.mean() >= 0.95


def test_noise_flat_images_and_blends_are_not_high_quality():
    rng = np.random.RandomState(0)
    noise = rng.randint(0, 256, (40, 64, 64, 3)).astype(np.uint8)
    flat = np.stack([np.full((64, 64, 3), v, np.uint8) for v in (0, 128, 255)]
                    + [np.full((64, 64, 3), rd.SKIN, np.uint8)])
    smooth = np.asarray(Image.fromarray(noise[0]).resize((8, 8)).resize((64, 64)))[None]
    pairs = [(i, j) for i, j in rng.randint(0, 5000, (60, 2)) if av.attributes(i) != av.attributes(j)]
    random_blends = np.stack([(av.render(i) / 2 + av.render(j) / 2).astype(np.uint8) for i, j in pairs])
    for group in (noise, flat, smooth, random_blends):
        assert not av.decode_arrays(group).high_quality.any()


@pytest.mark.parametrize("factor", ["background", "hair", "style", "eyes"])
def test_blend_of_two_modes_differing_in_one_factor_is_not_high_quality(factor):
    """The hardest blends: same position and shade, one factor differs."""
    palette = {"background": list(av.BACKGROUNDS), "hair": list(av.HAIR), "style": list(av.STYLES),
               "eyes": list(av.EYES)}[factor]
    blends = []
    for i in range(0, 2 * av.N_MODES, 3):
        a = av.attributes(i)
        other = palette[(palette.index(getattr(a, factor)) + 1 + i % (len(palette) - 1)) % len(palette)]
        b = av.Attributes(**{**a.__dict__, factor: other})
        blends.append(av.render(i) / 2 + same_nuisance(i, b) / 2)
    decoded = av.decode_arrays(np.stack(blends).astype(np.uint8))
    assert not decoded.high_quality.any()
    assert decoded.distance.min() > av.MATCH + 5  # with a margin


def test_perfect_sampler_covers_everything_and_is_even():
    indices = np.random.RandomState(1).randint(0, 2**31, 10_000)
    report = av.coverage_report(renders(indices))
    assert report.samples == 10_000 and report.modes_covered == report.modes_total == 240
    assert report.high_quality >= 0.99
    assert report.kl_to_uniform < 0.03  # sampling noise alone: about 239 / 20000 = 0.012
    assert json.loads(json.dumps(report.to_dict()))["coverage"] == 1.0


def test_collapsed_sampler_covers_three_modes_with_high_kl():
    report = av.coverage_report(renders([7, 8, 100] * 200))
    assert report.modes_covered == 3 and report.coverage == 3 / 240
    assert report.high_quality == 1.0
    assert report.kl_to_uniform == pytest.approx(math.log(80), abs=1e-6)
    assert report.largest_mode_share == pytest.approx(1 / 3)
    assert report.render().startswith("3/240 modes covered (1.2%), 100.0% high quality, KL to uniform 4.382")


def test_a_sampler_of_bad_images_scores_zero():
    report = av.coverage_report(np.zeros((20, 64, 64, 3), np.uint8))
    assert (report.modes_covered, report.high_quality, report.kl_to_uniform) == (0, 0.0, math.inf)
    assert json.loads(json.dumps(report.to_dict()))["kl_to_uniform"] is None


class RenderBank(nn.Module):
    """A collapsed 'generator': z picks one of a few avatars by its largest entries."""

    def __init__(self, indices: list[int], z_dim: int = 8) -> None:
        super().__init__()
        bank = torch.from_numpy(renders(indices).transpose(0, 3, 1, 2).copy()).float() / 127.5 - 1
        self.register_buffer("bank", bank)
        self.z_dim = z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.bank[z.flatten(1)[:, : len(self.bank)].argmax(1)]


def test_evaluate_generator_on_a_real_gan_serve_generator():
    G = Generator.from_module(RenderBank([7, 8, 100]), z_dim=8)
    done: list[int] = []
    report = av.evaluate_generator(G, n=100, seed0=5, progress=done.append, chunk=40)
    assert sum(done) == 100 and report.samples == 100
    assert report.modes_covered == 3 and report.high_quality == 1.0
    assert report.kl_to_uniform >= math.log(80) - 1e-6  # ln 240 - H(p), and H(p) <= ln 3
    direct = av.coverage_report(G.generate(range(5, 105)))
    assert direct == report
    with pytest.raises(ValueError, match="seeds"):
        av.evaluate_generator(G, n=10, seed0=2**32 - 5)


def test_evaluate_generator_refuses_images_it_cannot_read():
    class Grey(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(z), 1, 64, 64)

    with pytest.raises(ValueError, match="64x64 RGB"):
        av.evaluate_generator(Generator.from_module(Grey(), z_dim=4), n=10)


@pytest.mark.parametrize("resolution,channels", [(64, 3), (32, 1), (128, 3)])
def test_dataset_gives_tensors_in_minus_one_one(resolution, channels):
    ds = av.AvatarsDataset(length=10, resolution=resolution, channels=channels)
    x = ds[3]
    assert x.dtype == torch.float32 and tuple(x.shape) == (channels, resolution, resolution)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    if channels == 3:
        assert torch.equal(((x + 1) * 127.5).round().byte().permute(1, 2, 0),
                           torch.from_numpy(av.render(3, resolution)))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert tuple(batch.shape) == (4, channels, resolution, resolution)
    with pytest.raises(IndexError):
        ds[10]


def test_dataset_rejects_what_it_cannot_make():
    with pytest.raises(ValueError, match="32, 64 or 128"):
        av.AvatarsDataset(resolution=48)
    with pytest.raises(ValueError, match="1 or 3"):
        av.AvatarsDataset(channels=2)
    with pytest.raises(ValueError, match="length"):
        av.AvatarsDataset(length=0)


def test_preview_is_a_png_grid_of_64_modes(tmp_path):
    data = av.preview(tmp_path / "preview.png")
    assert (tmp_path / "preview.png").read_bytes() == data
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (8 * 66 + 2, 8 * 66 + 2)
    assert read_metadata(data)["gan_serve.data"] == "builtin:avatars"
    assert len({av.attributes(i).mode for i in av.metric.PREVIEW_INDICES}) == 64
