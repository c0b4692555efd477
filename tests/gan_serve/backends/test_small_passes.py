"""Small passes: a chunk of fewer images than the micro-batch runs at a smaller size only where
the probe at load showed the runner gives a full pass's bits there (backends.probe_small_passes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gan_serve
from gan_serve import images as img
from gan_serve.backends import probe_latents, probe_small_passes
from gan_serve.generator import Generator
from tests.gan_serve.tiny_models import Z_DIM, RowWise, native_dcgan, stand_in


def test_a_runner_whose_rows_keep_their_bits_at_every_size_passes_them_all():
    G = stand_in(RowWise())
    assert G.probe_small_passes() == (1, 2, 4, 8)
    assert G.runner.small_passes == (1, 2, 4, 8)


def test_sizes_whose_bits_differ_are_refused_and_their_passes_stay_larger():
    runner = RowWise(drift=4)  # 1, 2 and 3 rows give other bits; 4 and more the full pass's
    G = stand_in(runner)
    full = G.generate(range(16))
    assert G.probe_small_passes() == (4, 8)
    runner.passes.clear()
    assert np.array_equal(G.generate([0]), full[:1])
    assert np.array_equal(G.generate(range(5)), full[:5])
    assert runner.passes == [4, 8]  # never 1 or 2, whose bits differ


def test_a_difference_below_one_pixel_level_is_still_refused():
    # the drift moves each float by one step: the bits differ, the uint8 pixels do not
    z = probe_latents(16, Z_DIM)
    drifting, exact = RowWise(drift=16), RowWise()
    small, full = drifting.run(z[:1]), exact.run(z)[:1]
    assert not np.array_equal(small, full)
    assert np.array_equal(img.to_uint8(small, (-1, 1)), img.to_uint8(full, (-1, 1)))
    assert stand_in(drifting).probe_small_passes() == ()


def test_a_size_the_runner_fails_on_is_left_out():
    G = stand_in(RowWise(fail_below=4))
    assert G.probe_small_passes() == (4, 8)


def test_a_lone_image_runs_one_row_after_the_probe_and_sixteen_before():
    runner = RowWise()
    G = stand_in(runner)
    before = G.generate(range(19))
    assert runner.passes == [16, 16]  # 19 images: a full pass and 3 images padded to 16
    G.probe_small_passes()
    runner.passes.clear()
    assert np.array_equal(G.generate([7]), before[7:8])
    assert np.array_equal(G.generate(range(19)), before)
    assert runner.passes == [1, 16, 4]


def test_the_probe_uses_the_plans_latents():
    z = probe_latents(16, 100)
    assert np.array_equal(z[:8], gan_serve.latents.latents_for_seeds(range(8), 100))
    assert np.array_equal(z[8:], 4 * gan_serve.latents.latents_for_seeds(range(8, 16), 100))


class BatchSized(nn.Module):
    """A generator whose output depends on its batch size (as a batch statistic would)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(Z_DIM, 3, 4)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.up(z.view(len(z), Z_DIM, 1, 1)) + 1e-3 * len(z))


def test_a_module_whose_output_depends_on_the_batch_size_keeps_full_passes():
    torch.manual_seed(0)
    G = Generator.from_module(BatchSized(), Z_DIM)
    full = G.generate(range(16))
    assert G.probe_small_passes() == ()
    assert np.array_equal(G.generate([3]), full[3:4])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_after_the_probe_every_grouping_gives_the_bytes_of_full_passes(tmp_path, precision):
    # on real kernels the probe may pass or refuse a size; either way the bytes stay those of
    # full micro-batches
    path = native_dcgan(tmp_path / "g.safetensors", 32, width=8, z_dim=8)
    G = gan_serve.load(path, backend="torch", precision=precision)
    want = G.generate(range(40))
    sizes = G.probe_small_passes()
    assert set(sizes) <= {1, 2, 4, 8}
    singles = np.concatenate([G.generate([s]) for s in range(40)])
    threes = np.concatenate([G.generate(range(s, min(s + 3, 40))) for s in range(0, 40, 3)])
    assert np.array_equal(singles, want) and np.array_equal(threes, want)
    assert np.array_equal(G.generate(range(40)), want)


def test_the_sizes_found_belong_to_the_runner_probed(tmp_path):
    path = native_dcgan(tmp_path / "g.safetensors", 8, width=2)
    G = gan_serve.load(path, backend="torch", precision="fp32")
    other = gan_serve.load(path, backend="torch", precision="fp32")
    probe_small_passes(G.runner, G.z_dim)
    assert other.runner.small_passes == ()
