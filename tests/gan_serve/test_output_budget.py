"""The output budget (n x pixels per request and per command) and the formats' size limits,
checked before any image is generated, on the Python API and the CLI (HTTP: http/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import gan_serve
from gan_serve import bulk
from gan_serve import images as img
from gan_serve.commands.cli import app
from gan_serve.errors import InputError
from gan_serve.request import DEFAULT_LIMITS, Limits, PathRequest, SeedRequest
from tests.gan_serve.tiny_models import native_dcgan


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A 5 KB honest native file whose images are 1024x1024: 32 of them fill the budget."""
    return native_dcgan(tmp_path_factory.mktemp("big") / "big1024.safetensors", 1024)


@pytest.fixture(scope="module")
def G_big(big):
    G = gan_serve.load(big, backend="torch", precision="fp32")

    def no_pass(z):  # any forward pass in these tests is a failure: refusals come first
        raise AssertionError(f"a forward pass of {len(z)} latents ran")

    G.runner.run = no_pass
    return G


@pytest.fixture(scope="module")
def G64(small_ckpt):
    return gan_serve.load(small_ckpt)


def test_the_budget_lets_4096_images_of_64x64_and_their_grid_through(G64):
    assert DEFAULT_LIMITS.max_pixels == 2**25
    SeedRequest.parse(n=4096).check_output(G64, "png", grid=True)
    SeedRequest.parse(n=4096).check_output(G64, "webp", nrow=200, grid=True)  # 13,202 px wide
    PathRequest.parse(seeds="0-1", steps=1024).check_output(G64, "png")  # a 67,586 px strip


def test_more_pixels_than_the_budget_are_refused_before_any_pass(G_big):
    with pytest.raises(InputError, match=r"64 images of 1024x1024 would be 67,108,864 pixels; "
                                         r"the output budget is 33,554,432 pixels per request"):
        G_big.generate(range(64))
    with pytest.raises(InputError, match="64 images of 1024x1024"):
        G_big.interpolate([0, 1], steps=64)
    with pytest.raises(InputError, match="a 6,158x6,158 grid would be 37,920,964 pixels"):
        G_big.grid(range(32))  # 32 images fit; a 6x6 grid of them does not
    SeedRequest.parse(n=32).check_output(G_big)  # exactly the budget
    with pytest.raises(InputError, match="64 images"):  # candidates count: they are generated
        SeedRequest.parse(n=1, candidates=64).check_output(G_big)


def test_a_server_may_lower_the_budget_never_raise_it(G_big):
    small = Limits(max_pixels=1024 * 1024)
    SeedRequest.parse(n=1, limits=small).check_output(G_big)
    with pytest.raises(InputError, match="the output budget is 1,048,576 pixels"):
        SeedRequest.parse(n=2, limits=small).check_output(G_big)
    with pytest.raises(InputError, match="the output budget is 1,048,576"):
        PathRequest.parse(seeds=[1, 2], steps=2, limits=small).check_output(G_big)
    for bad in (DEFAULT_LIMITS.max_pixels + 1, 0, True, 2.5):
        with pytest.raises(InputError, match="max_pixels must be an integer from 1 to 33554432"):
            Limits(max_pixels=bad)


def test_format_limits_are_known_before_generation(G64):
    strip = PathRequest.parse(seeds="0-1", steps=1024)  # 1,024 frames of 64x64 in one row
    for fmt, side in (("jpeg", "65,500"), ("webp", "16,383")):
        with pytest.raises(InputError, match=f"the strip would be 67,586x68 pixels; {fmt} allows "
                                             f"at most {side} a side"):
            strip.check_output(G64, fmt)
    strip.check_output(G64, "png")
    strip.check_output(G64, "gif", animate=True)  # frames are 64x64
    strip.check_output(G64, "webp", nrow=200)
    with pytest.raises(InputError, match="the grid would be 19,802x68 pixels; webp allows"):
        SeedRequest.parse(n=300).check_output(G64, "webp", nrow=300, grid=True)
    # the encoders refuse the same sizes themselves (Python callers of gan_serve.images)
    with pytest.raises(InputError, match="webp allows at most 16,383"):
        img.encode_image(np.zeros((1, 16_384, 3), np.uint8), "webp")
    with pytest.raises(InputError, match="gif allows at most 65,535"):
        img.encode_animation(np.zeros((1, 1, 65_536, 1), np.uint8), "gif")
    assert img.grid_shape(10, 64, 64, 3) == img.make_grid(np.zeros((10, 64, 64, 3), np.uint8), 3).shape[:2]


def test_nrow_and_duration_are_checked_before_generation(G_big):
    path = PathRequest.parse(seeds=[1, 2], steps=2)
    for nrow in (0, -1, True, 1.5):
        with pytest.raises(InputError, match="nrow must be an integer of at least 1"):
            path.check_output(G_big, "png", nrow=nrow)
        with pytest.raises(InputError, match="nrow must be an integer of at least 1"):
            SeedRequest.parse(n=2).check_output(G_big, "png", nrow=nrow, grid=True)
    for ms in (9, 10_001, True):
        with pytest.raises(InputError, match="frame duration must be 10..10000 ms"):
            path.check_output(G_big, "gif", animate=True, duration_ms=ms)
    path.check_output(G_big, "png", duration_ms=1)  # a strip has no frame duration


def test_streamed_files_come_in_chunks_within_the_budget(G_big, G64):
    assert bulk.chunk_for(G64) == bulk.CHUNK
    assert bulk.chunk_for(G_big) == 32  # 256 images of 1024x1024 would be 268 M pixels
    with pytest.raises(InputError, match="one image of 1024x1024 would be 1,048,576 pixels"):
        bulk.chunk_for(G_big, Limits(max_pixels=1000))


def fails(*args: object, match: str) -> str:
    """exit 2, one line on stderr, no traceback."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in res.output, res.output
    return lines[0]


def test_cli_refuses_before_generating(big, small_ckpt, tmp_path):
    out = tmp_path / "x.png"
    fails("generate", "-m", big, "--n", 64, "-o", out, match="64 images of 1024x1024 would be")
    fails("generate", "-m", big, "--n", 64, "--individual", tmp_path / "d", "--latents-out",
          tmp_path / "z.npy", match="64 images of 1024x1024")  # files held in memory count too
    fails("interpolate", "-m", big, "--seeds", "0-1", "--steps", 64, "-o", out, match="64 images")
    fails("inspect", big, "--samples", 64, match="64 images of 1024x1024")
    fails("generate", "-m", small_ckpt, "--n", 300, "--nrow", 300, "-o", tmp_path / "g.webp",
          match="webp allows at most 16,383 a side")
    fails("interpolate", "-m", small_ckpt, "--seeds", "0-1", "--steps", 1024, "-o",
          tmp_path / "s.jpg", match="jpeg allows at most 65,500 a side")
    assert not any(tmp_path.iterdir())
    # nrow and the frame duration are refused before the model is even looked for
    missing = tmp_path / "missing.pth"
    fails("interpolate", "-m", missing, "--from", 1, "--to", 2, "--nrow", 0, "-o", out,
          match="nrow must be an integer of at least 1, got 0")
    fails("generate", "-m", missing, "--nrow", 0, "-o", out, match="nrow must be an integer")
    fails("interpolate", "-m", missing, "--from", 1, "--to", 2, "--duration-ms", 5, "-o",
          tmp_path / "a.gif", match="frame duration must be 10..10000 ms, got 5")


def test_inspect_samples_what_the_budget_holds_by_default(small_ckpt, monkeypatch):
    from gan_serve.commands import model

    monkeypatch.setattr(model, "TOP", Limits(max_pixels=64 * 64 * 10))
    res = CliRunner().invoke(app, ["inspect", str(small_ckpt), "--json"])
    assert res.exit_code == 0, res.output
    assert '"samples": 10' in res.stdout  # 256 by default; the budget holds 10 images of 64x64
