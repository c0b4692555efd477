"""`--precision int8`: close to fp32, the same bytes on every load, and a precise refusal wherever
the machine or the model cannot run it (never a silent fallback)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import gan_serve
from benchmarks.reference_nets import randomize
from gan_serve import images as img
from gan_serve import outputs
from gan_serve.arch import DCGANGenerator
from gan_serve.backends import int8_plan
from gan_serve.backends.torch_backend import TorchBackend
from gan_serve.commands.cli import app
from gan_serve.errors import InputError, UnsupportedPrecisionError
from gan_serve.spec import DCGANConfig, ModelSpec
from tests.gan_serve.one_line import one_line_exit_2

needs_int8 = pytest.mark.skipif(not int8_plan.int8_dot_products(),
                                reason="this CPU has no int8 dot products (VNNI or AMX-int8)")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse)) if mse else float("inf")


@needs_int8
@pytest.mark.parametrize("name", ["examples_nc3", "examples_ngf64", "examples_nc1"])
def test_int8_images_are_close_to_fp32(legacy, name):
    seeds = range(64)
    want = gan_serve.load(legacy[name].path, backend="torch", precision="fp32").generate(seeds)
    G = gan_serve.load(legacy[name].path, precision="int8")
    got = G.generate(seeds)
    assert G.backend == "torch/cpu/int8"
    assert got.shape == want.shape and got.dtype == np.uint8
    assert psnr(got, want) > 42  # 52-57 dB here (bf16: 55); a calibration scale off by 1.5x: 31-48


@needs_int8
def test_int8_bytes_are_the_same_on_every_load_and_in_every_batch(legacy):
    path = legacy["examples_nc3"].path
    first = gan_serve.load(path, precision="int8")
    second = gan_serve.load(path, precision="int8")
    seeds = [*range(40), 2**32 - 1]
    assert np.array_equal(first.generate(seeds), second.generate(seeds))
    assert np.array_equal(first.generate(seeds, truncation_psi=1.8),
                          second.generate(seeds, truncation_psi=1.8))
    assert np.array_equal(first.generate([7])[0], first.generate(range(20))[7])  # batch-independent
    z = first.latents(range(16))  # the float path gives the table's pixels
    assert np.array_equal(img.to_uint8(first.runner.run(z), (-1.0, 1.0)), first.generate(range(16)))


@needs_int8
def test_the_provenance_records_the_precision_and_the_calibration(legacy):
    path = legacy["examples_nc3"].path
    meta = outputs.provenance(gan_serve.load(path, precision="int8"), [0])
    assert meta["gan_serve.backend"] == "torch/cpu/int8"
    assert meta["gan_serve.calibration"] == int8_plan.CALIBRATION
    assert "seeds 0-255" in int8_plan.CALIBRATION
    assert list(int8_plan.CALIBRATION_SEEDS) == list(range(256))
    assert "gan_serve.calibration" not in outputs.provenance(gan_serve.load(path, precision="fp32"), [0])


@needs_int8
def test_one_int8_layer_is_the_deconvolution_within_a_quantization_step():
    g = torch.Generator().manual_seed(0)
    conv = nn.ConvTranspose2d(24, 40, 4, 2, 1)  # in != out channels, which torch's own int8 op gets wrong
    x = torch.randint(0, 256, (3, 5, 6, 24), generator=g, dtype=torch.uint8)  # (B, H, W, C), H != W
    scale_in, scale_out = 0.01, 0.004
    layer = int8_plan._Int8Deconv(conv, scale_in, scale_out)
    with torch.no_grad():
        want = F.relu(conv(x.permute(0, 3, 1, 2).float() * scale_in)).permute(0, 2, 3, 1)
    got = layer(x).float() * scale_out
    assert got.shape == want.shape == (3, 10, 12, 40)
    weight_step = conv.weight.abs().amax().item() / 127 * 4 * 24 * 255 * scale_in / 2  # worst case
    assert (got - want.clamp(max=255 * scale_out)).abs().max() <= scale_out + weight_step
    assert (got - want.clamp(max=255 * scale_out)).abs().mean() < 2 * scale_out


def test_no_int8_dot_products_is_a_precise_error(legacy, monkeypatch):
    monkeypatch.setattr(int8_plan, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    with pytest.raises(UnsupportedPrecisionError, match="no int8 dot products"):
        gan_serve.load(legacy["examples_nc3"].path, precision="int8")
    assert "AVX512-VNNI" in int8_plan.int8_unsupported(set())  # the lscpu names: tests/benchmarks


def test_int8_refuses_artifacts_gpus_and_other_shapes(legacy, artifacts):
    with pytest.raises(UnsupportedPrecisionError, match="ONNX file"):
        gan_serve.load(artifacts["onnx"], precision="int8")
    with pytest.raises(UnsupportedPrecisionError, match="CPU only"):
        gan_serve.load(legacy["examples_nc3"].path, precision="int8", device="cuda")
    config = DCGANConfig(z_dim=8, widths=[16], channels=3)  # two layers: nothing to run in int8
    spec = ModelSpec(config=config.to_dict(), z_dim=8, img_resolution=config.img_resolution, channels=3)
    other = nn.Sequential(nn.Linear(8, 3 * 8 * 8), nn.Tanh(), nn.Unflatten(1, (3, 8, 8)))  # --arch
    why = "another shape" if int8_plan.int8_unsupported() is None else "cannot run here"
    for module in (randomize(DCGANGenerator(config)), other):
        with pytest.raises(UnsupportedPrecisionError, match=why):
            TorchBackend(module, spec, "cpu", "int8")
    assert issubclass(UnsupportedPrecisionError, InputError)  # exit 2 on the CLI, 4xx over HTTP


def test_auto_never_chooses_int8(legacy):
    assert gan_serve.load(legacy["examples_nc3"].path).runner.precision != "int8"


def test_the_flag_is_parsed_and_documented(legacy, tmp_path):
    res = CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "200"})
    assert "int8" in res.output and "seeds 0-255" in res.output
    assert "int8" in CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    line = one_line_exit_2(["generate", "-m", str(legacy["examples_nc3"].path), "--precision", "int4",
                            "--n", "1", "-o", str(tmp_path / "x.png")])
    assert "int8" in line  # the list of choices names it
    line = one_line_exit_2(["generate", "-m", str(legacy["examples_nc3"].path), "--precision", "int8",
                            "--device", "cuda", "--n", "1", "-o", str(tmp_path / "x.png")])
    assert "CPU only" in line


@needs_int8
def test_generate_and_interpolate_run_in_int8_from_the_cli(legacy, tmp_path):
    model = str(legacy["examples_nc3"].path)
    for args in (["generate", "--n", "4", "-o", str(tmp_path / "grid.png")],
                 ["interpolate", "--from", "1", "--to", "2", "--steps", "4", "-o", str(tmp_path / "s.png")]):
        res = CliRunner().invoke(app, [*args, "-m", model, "--precision", "int8"])
        assert res.exit_code == 0, res.output
        assert "torch/cpu/int8" in res.output
