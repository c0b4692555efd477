"""benchmarks/int8_plan.py, the int8 path measured against bf16 (not shipped): it must stay
correct for its figures to mean anything: close to fp32, the same bytes on every build, and
each int8 layer the deconvolution it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gan_serve
from benchmarks import int8 as bench
from benchmarks import int8_plan
from benchmarks.reference_nets import randomize
from gan_serve import images as img
from gan_serve.arch import DCGANGenerator
from gan_serve.spec import DCGANConfig

needs_int8 = pytest.mark.skipif(not int8_plan.int8_dot_products(),
                                reason="this CPU has no int8 dot products (VNNI or AMX-int8)")


@needs_int8
@pytest.mark.parametrize("name", ["examples_nc3", "examples_ngf64", "examples_nc1"])
def test_int8_images_are_close_to_fp32(legacy, name):
    seeds = range(64)
    want = gan_serve.load(legacy[name].path, backend="torch", precision="fp32").generate(seeds)
    G = int8_plan.load_int8(legacy[name].path)
    got = G.generate(seeds)
    assert G.backend == "torch/cpu/int8"
    assert got.shape == want.shape and got.dtype == np.uint8
    db, _ = bench.psnr(got, want)
    assert db > 42  # 52-57 dB here (bf16: 55); a calibration scale off by 1.5x: 31-48


@needs_int8
def test_int8_bytes_are_the_same_on_every_build_and_in_every_batch(legacy):
    path = legacy["examples_nc3"].path
    first, second = int8_plan.load_int8(path), int8_plan.load_int8(path)
    seeds = [*range(40), 2**32 - 1]
    assert np.array_equal(first.generate(seeds), second.generate(seeds))
    assert np.array_equal(first.generate(seeds, truncation_psi=1.8),
                          second.generate(seeds, truncation_psi=1.8))
    assert np.array_equal(first.generate([7])[0], first.generate(range(20))[7])  # batch-independent
    z = first.latents(range(16))  # the float path gives the table's pixels
    assert np.array_equal(img.to_uint8(first.runner.run(z), (-1.0, 1.0)), first.generate(range(16)))


@needs_int8
def test_one_int8_layer_is_the_deconvolution_within_a_quantization_step():
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(24, 40, 4, 2, 1)  # in != out channels, which torch's own int8 op gets wrong
    x = torch.randint(0, 256, (3, 5, 6, 24), dtype=torch.uint8)  # (B, H, W, C), H != W
    scale_in, scale_out = 0.01, 0.004
    layer = int8_plan._Int8Deconv(conv, scale_in, scale_out)
    with torch.no_grad():
        want = F.relu(conv(x.permute(0, 3, 1, 2).float() * scale_in)).permute(0, 2, 3, 1)
    want = want.clamp(max=255 * scale_out)  # uint8 saturates
    got = layer(x).float() * scale_out
    assert got.shape == want.shape == (3, 10, 12, 40)
    weight_step = conv.weight.abs().amax().item() / 127 * 4 * 24 * 255 * scale_in / 2  # worst case
    assert (got - want).abs().max() <= scale_out + weight_step
    assert (got - want).abs().mean() < 2 * scale_out


@needs_int8
def test_the_routes_table_row_checks_its_own_output():
    row = bench._route_row(64, 32, 4, 1)
    ours = row.split("|")[3]
    assert "ms (r = " in ours and float(ours.split("r = ")[1].split(")")[0]) > 0.999


def test_it_refuses_a_cpu_without_int8_dot_products_and_other_shapes(legacy, monkeypatch):
    config = DCGANConfig(z_dim=8, widths=[16], channels=3)  # two layers: nothing to run in int8
    other = nn.Sequential(nn.ConvTranspose2d(8, 4, 4), nn.ReLU(), nn.ConvTranspose2d(4, 3, 4, 2, 1))
    if int8_plan.int8_unsupported() is None:
        for module in (randomize(DCGANGenerator(config)), other):
            with pytest.raises(int8_plan.Int8Unsupported, match="another shape"):
                int8_plan.Int8Plan.build(module, 16, 8, (-1.0, 1.0))
    monkeypatch.setattr(int8_plan, "int8_dot_products", lambda flags=None: [])
    with pytest.raises(int8_plan.Int8Unsupported, match="no int8 dot products"):
        int8_plan.load_int8(legacy["examples_nc3"].path)
    assert bench.bench()[0].figure == "not measured"
