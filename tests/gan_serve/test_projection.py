"""Projection (gan_serve.projection, gan_serve.targets): a tiny generator's own images are
recovered, the same input gives the same latent bytes, any image mode is taken, bad input is
one precise error."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import gan_serve
from gan_serve import images as img
from gan_serve import targets as tg
from gan_serve.discriminator import DCGANDiscriminator, DiscriminatorConfig
from gan_serve.errors import InputError
from gan_serve.projection import MAX_IMAGES, ProjectOptions, project
from tests.gan_serve.tiny_models import native_dcgan

FAST = ProjectOptions(steps=60, starts=2, screen=16, lr=0.1)


@pytest.fixture(scope="module")
def G(tmp_path_factory):
    return gan_serve.load(native_dcgan(tmp_path_factory.mktemp("tiny") / "g.safetensors", 8))


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_recovers_an_image_the_model_made(G):
    target = G.generate([123_456])  # a seed far outside the screened 0..15
    result = G.project(list(target), steps=150, starts=2, screen=16)
    assert result.latents.shape == (1, G.z_dim) and result.latents.dtype == np.float32
    assert result.psnr[0] >= 30, result.psnr
    assert result.ssim[0] >= 0.95, result.ssim
    assert np.array_equal(result.images, G.synthesize(result.latents))  # what generate makes of z
    screened = project(G, list(target), ProjectOptions(steps=0, starts=2, screen=16))
    assert result.psnr[0] > screened.psnr[0] + 5  # the optimisation, not the screen, got there


def test_same_input_same_latent_bytes_and_files(G):
    target = G.generate([9, 10])
    a = project(G, list(target), FAST)
    b = project(G, list(target), FAST)
    assert a.latents.tobytes() == b.latents.tobytes()
    assert a.files(1) == b.files(1)


def test_files_carry_the_latent_and_provenance(G, tmp_path):
    data = png(Image.fromarray(G.generate([5])[0]))
    result = project(G, [data], FAST)
    files = result.files(0)
    z = np.load(io.BytesIO(files[".npy"]))
    assert z.shape == (1, G.z_dim) and z.dtype == np.float32
    path = tmp_path / "z.npy"
    path.write_bytes(files[".npy"])
    assert np.array_equal(gan_serve.request.read_latents([path]), result.latents)
    meta = img.read_metadata(files[".png"])
    import hashlib

    assert meta["gan_serve.target_sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["gan_serve.steps"] == "60" and "adam-z" in meta["gan_serve.method"]
    assert float(meta["gan_serve.psnr"]) == pytest.approx(result.psnr[0], abs=0.01)
    assert meta["gan_serve.model"] == G.model_id and "gan_serve.loss" in meta
    sheet = np.asarray(Image.open(io.BytesIO(files["-sheet.png"])))
    assert sheet.shape == (8 + 4, 3 * 8 + 8, 3)  # three 8x8 tiles in make_grid's 2 px padding
    assert np.array_equal(sheet[2:10, 2:10], result.targets[0].pixels)
    assert np.array_equal(sheet[2:10, 12:20], result.images[0])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "I;16", "CMYK", "1", "F"])
def test_any_mode_and_size_is_resized_to_the_model(G, mode):
    rng = np.random.default_rng(0)
    if mode == "I;16":  # Pillow before 10.1 does not convert RGB to I;16
        image = Image.fromarray(rng.integers(0, 65536, (30, 47), dtype=np.uint16))
        assert image.mode == "I;16"
    else:
        image = Image.fromarray(rng.integers(0, 256, (30, 47, 3), dtype=np.uint8)).convert(mode)
    target = tg.of(image, 0, 8, 3)
    assert target.pixels.shape == (8, 8, 3) and target.pixels.dtype == np.uint8
    assert tg.of(image, 0, 16, 1).pixels.shape == (16, 16, 1)


def test_transparent_pixels_become_white_and_16_bit_grey_is_scaled():
    clear = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    assert (tg.fit(clear, 8, 3) == 255).all()
    grey = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    assert (tg.fit(grey, 8, 1) == 255).all()


def test_array_and_pil_targets_match_their_png(G):
    image = G.generate([3])[0]
    from_png = tg.of(png(Image.fromarray(image)), 0, 8, 3)
    assert np.array_equal(tg.of(image, 0, 8, 3).pixels, from_png.pixels)
    assert np.array_equal(tg.of(Image.fromarray(image), 0, 8, 3).pixels, image)


def test_discriminator_features_join_the_loss(G):
    torch.manual_seed(0)
    D = DCGANDiscriminator(DiscriminatorConfig(widths=[4], batch_norm=[False])).eval()
    target = list(G.generate([77]))
    with_d = project(G, target, FAST, discriminator=D)
    assert "D-features" in with_d.method
    assert with_d.loss[0] != project(G, target, FAST).loss[0]
    assert all(p.requires_grad for p in D.parameters())  # put back as they were


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (no image data: it must not be decoded)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82")


@pytest.mark.parametrize(("call", "match"), [
    (lambda G: project(G, [], FAST), f"1 to {MAX_IMAGES} images"),
    (lambda G: project(G, [b"not an image"], FAST), "not an image Pillow can read"),
    (lambda G: project(G, [huge_png_header(10_000, 10_000)], FAST), "10,000x10,000 pixels; an image"),
    (lambda G: project(G, [huge_png_header(20_000, 20_000)], FAST), "at most 67,108,864 pixels"),
    (lambda G: project(G, ["/no/such.png"], FAST), "no such image file"),
    (lambda G: project(G, [np.zeros((4, 4), np.float32)], FAST), "must be uint8"),
    (lambda G: project(G, [3.5], FAST), "cannot project a float"),
    (lambda G: G.project([b""], options=FAST, steps=3), "not both"),
    (lambda G: G.project([b""], stepz=3), "unexpected keyword"),
])
def test_bad_inputs_are_one_precise_error(G, call, match):
    with pytest.raises(InputError, match=re.escape(match)):
        call(G)


@pytest.mark.parametrize(("fields", "match"), [
    ({"steps": -1}, "steps must be an integer from 0 to 5,000"),
    ({"steps": 5001}, "steps must be"),
    ({"starts": 0}, "starts must be"),
    ({"starts": 8, "screen": 4}, "cannot exceed screen"),
    ({"screen": 4097}, "screen must be"),
    ({"seed": 2**32 - 2, "screen": 4}, "seed + screen - 1"),
    ({"lr": 0.0}, "lr must be a number in (0"),
    ({"steps": True}, "steps must be"),
    ({"ssim_weight": float("nan")}, "ssim_weight must be"),
])
def test_options_are_bounded(fields, match):
    with pytest.raises(InputError, match=re.escape(match)):
        ProjectOptions(**fields)


def test_onnx_models_say_projection_needs_a_torch_checkpoint(artifacts):
    G = gan_serve.load(artifacts["onnx"])
    with pytest.raises(InputError, match="projection needs the generator's gradients: a torch checkpoint"):
        G.project([np.zeros((8, 8, 3), np.uint8)])


def test_the_bundled_models_onnx_export_projects_with_its_checkpoint():
    G = gan_serve.load("default")  # ONNX Runtime, where it is installed
    result = G.project([G.generate([1])[0]], steps=1, starts=1, screen=1)
    assert result.generator.backend == "torch/cpu/fp32"
    assert result.generator.model_id == G.model_id


def test_a_grey_pytorch_examples_netg_projects(legacy):
    G = gan_serve.load(legacy["examples_nc1"].path, precision="fp32")  # netG, nz=64, nc=1
    target = G.generate([4242])
    options = ProjectOptions(steps=40, starts=1, screen=8)
    result = project(G, list(target), options)
    assert result.latents.shape == (1, 64) and result.images.shape == (1, 64, 64, 1)
    start = project(G, list(target), ProjectOptions(steps=0, starts=1, screen=8))
    assert result.loss[0] < start.loss[0] and result.psnr[0] >= 40  # random weights: flat images


def test_progress_is_called_once_per_step(G):
    calls: list[int] = []
    project(G, [G.generate([1])[0]], ProjectOptions(steps=7, starts=1, screen=2), progress=calls.append)
    assert calls == [1] * 7
