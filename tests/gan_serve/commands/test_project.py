"""`gan-serve project` through typer's CliRunner: the files it writes, that other commands take
its latents, the same bytes twice, and one line for every bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import gan_serve
from gan_serve import images as img
from gan_serve.cli import app
from tests.gan_serve.one_line import one_line_exit_2
from tests.gan_serve.tiny_models import native_dcgan

QUICK = ["--steps", "5", "--starts", "1", "--screen", "4"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return native_dcgan(tmp_path_factory.mktemp("tiny") / "g.safetensors", 8)


@pytest.fixture(scope="module")
def pictures(tiny, tmp_path_factory):
    """A PNG the model made and a larger RGBA image of another shape."""
    d = tmp_path_factory.mktemp("pictures")
    Image.fromarray(gan_serve.load(tiny).generate([40])[0]).save(d / "made.png")
    rgba = np.random.default_rng(1).integers(0, 256, (20, 13, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(d / "photo.png")
    return [d / "made.png", d / "photo.png"]


def project(*args: object) -> str:
    res = CliRunner().invoke(app, ["project", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res.stdout


def test_writes_latent_reconstruction_and_sheet(tiny, pictures, tmp_path):
    out = tmp_path / "proj"
    stdout = project(*pictures, "-m", tiny, "-o", out, *QUICK)
    assert "made: PSNR " in stdout and "photo: PSNR " in stdout
    for stem in ("made", "photo"):
        z = np.load(out / f"{stem}.npy")
        assert z.shape == (1, 4) and z.dtype == np.float32
        recon = (out / f"{stem}.png").read_bytes()
        meta = img.read_metadata(recon)
        assert meta["gan_serve.steps"] == "5" and len(meta["gan_serve.target_sha256"]) == 64
        assert np.array_equal(np.asarray(Image.open(out / f"{stem}.png")),
                              gan_serve.load(tiny, precision="fp32").synthesize(z)[0])
        assert Image.open(out / f"{stem}-sheet.png").size == (3 * 8 + 8, 8 + 4)


def test_interpolate_takes_the_latents(tiny, pictures, tmp_path):
    project(*pictures, "-m", tiny, "-o", tmp_path, *QUICK)
    strip = tmp_path / "strip.png"
    res = CliRunner().invoke(app, ["interpolate", "-m", str(tiny), "--latents", str(tmp_path / "made.npy"),
                                   "--latents", str(tmp_path / "photo.npy"), "--steps", "3",
                                   "--precision", "fp32",
                                   "-o", str(strip)])
    assert res.exit_code == 0, res.output
    frames = np.asarray(Image.open(strip))
    assert np.array_equal(frames[2:10, 2:10], np.asarray(Image.open(tmp_path / "made.png")))


def test_same_images_same_bytes(tiny, pictures, tmp_path):
    project(*pictures, "-m", tiny, "-o", tmp_path / "a", *QUICK)
    project(*pictures, "-m", tiny, "-o", tmp_path / "b", *QUICK)
    for name in ("made.npy", "photo.npy", "made.png", "photo-sheet.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bad_inputs_are_one_line(tiny, pictures, tmp_path, artifacts):
    base = ["project", "-m", str(tiny), "-o", str(tmp_path / "o")]
    cases = [
        ([*base, str(pictures[0]), "--steps", "-1"], "steps must be an integer from 0 to 5,000"),
        ([*base, str(pictures[0]), "--starts", "9", "--screen", "8"], "cannot exceed screen"),
        ([*base, str(tmp_path / "missing.png")], "no such image file"),
        ([*base, str(pictures[0]), str(pictures[0])], "two images are named 'made'"),
        ([*base, str(tiny)], "not an image Pillow can read"),
        (["project", "-m", str(artifacts["onnx"]), "-o", str(tmp_path / "o"), str(pictures[0])],
         "projection needs the generator's gradients: a torch checkpoint"),
        (["project", "-m", str(tiny), "-o", str(tmp_path / "no" / "o"), str(pictures[0])], "no"),
    ]
    for args, match in cases:
        line = one_line_exit_2(args)
        assert line.startswith("error: ") and match in line, (args, line)
    assert not (tmp_path / "o").exists()  # nothing written for a refused run


def test_an_arch_model_projects(legacy, pictures, tmp_path):
    stdout = project(pictures[1], "-m", legacy["fc_gen"].path, "--arch", "benchmarks.reference_nets:FcGen",
                     "--output-range", "0,1", "-o", tmp_path, "--steps", "2", "--starts", "1",
                     "--screen", "2")
    assert "photo: PSNR" in stdout and np.load(tmp_path / "photo.npy").shape == (1, 100)
