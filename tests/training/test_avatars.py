"""builtin:avatars: deterministic renders, >= 200 modes, a decoder that reads them back."""

from __future__ import annotations

import numpy as np
import pytest

from training import avatars as av


@pytest.fixture(scope="module")
def renders() -> np.ndarray:
    return np.stack([av.render(i) for i in range(2400)])  # every mode ten times


def test_at_least_200_modes_each_equally_common():
    assert av.N_MODES == 240
    modes = [av.attributes(i).mode for i in range(2 * av.N_MODES)]
    assert sorted(set(modes)) == list(range(av.N_MODES))
    assert all(av.Attributes.from_mode(m).mode == m for m in range(av.N_MODES))


def test_renders_are_deterministic_and_jittered():
    assert av.render(17).tobytes() == av.render(17).tobytes()
    same_mode = [av.render(5 + k * av.N_MODES) for k in range(4)]
    assert len({im.tobytes() for im in same_mode}) == 4  # position and shade vary
    assert av.render(0).shape == (64, 64, 3) and av.render(0).dtype == np.uint8


def test_decoder_reads_renders_back(renders):
    decoded = av.decode(renders)
    correct = sum(d.attributes == av.attributes(i) for i, d in enumerate(decoded))
    assert correct / len(renders) >= 0.99
    assert sum(d.high_quality for d in decoded) / len(renders) >= 0.99


def test_noise_black_and_blends_are_not_high_quality(renders):
    rng = np.random.RandomState(0)
    noise = rng.randint(0, 256, (50, 64, 64, 3)).astype(np.uint8)
    black = np.zeros((5, 64, 64, 3), np.uint8)
    a, b = renders[:50].astype(float), renders[120:170].astype(float)  # other hair and style
    blends = ((a + b) / 2).astype(np.uint8)
    for group in (noise, black, blends):
        assert not any(d.high_quality for d in av.decode(group))


def test_perfect_and_collapsed_samplers():
    perfect = av.coverage_report(np.stack([av.render(i) for i in range(10_000)]))
    assert perfect.coverage == 1.0 and perfect.high_quality >= 0.99 and perfect.kl_to_uniform < 0.03
    collapsed = av.coverage_report(np.stack([av.render(i % 3) for i in range(600)]))
    assert collapsed.modes_covered == 3 and collapsed.kl_to_uniform > 4
    assert "3/240 modes covered" in collapsed.render()


def test_evaluate_generator_uses_gan_serve_seeds():
    class RenderSampler:  # a "generator" that draws renders: seed s -> render(s)
        def generate(self, seeds, progress=None):  # noqa: ANN001, ANN201
            return np.stack([av.render(s) for s in seeds])

    report = av.evaluate_generator(RenderSampler(), n=480, chunk=100)
    assert report.samples == 480 and report.modes_covered == 240


@pytest.mark.parametrize("resolution,channels", [(64, 3), (32, 1), (128, 3)])
def test_dataset_gives_tensors_in_minus_one_one(resolution, channels):
    ds = av.AvatarsDataset(length=10, resolution=resolution, channels=channels)
    x = ds[3]
    assert tuple(x.shape) == (channels, resolution, resolution)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    with pytest.raises(ValueError, match="32, 64 or 128"):
        av.AvatarsDataset(resolution=48)
