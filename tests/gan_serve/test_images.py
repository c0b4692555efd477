"""Pixel mapping, make_grid layout and encoded files with provenance."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from gan_serve import images as img
from gan_serve.errors import InputError


def test_pixel_mapping_of_tanh_output():
    x = np.array([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0, np.nan], np.float32).reshape(1, 1, 1, 7)
    out = img.to_uint8(x)
    assert out.shape == (1, 1, 7, 1)
    assert out[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255, 255, 0]


def test_pixel_mapping_of_unit_range_output():
    x = np.array([0.0, 0.5, 1.0], np.float32).reshape(1, 1, 1, 3)
    assert img.to_uint8(x, (0.0, 1.0))[0, 0, :, 0].tolist() == [0, 128, 255]


def test_grid_matches_torchvision_layout():
    ims = np.stack([np.full((3, 4, 1), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = img.make_grid(ims, nrow=2)
    # 2 columns, 3 rows, 2 px padding around and between: (3*(3+2)+2, 2*(4+2)+2)
    assert grid.shape == (17, 14, 1)
    assert grid[2, 2, 0] == 10 and grid[2, 8, 0] == 20 and grid[7, 2, 0] == 30
    assert grid[12, 2, 0] == 50 and grid[12, 8, 0] == 0  # the empty cell stays pad value
    assert grid[0].max() == 0 and grid[:, 0].max() == 0


def test_default_nrow_is_ceil_sqrt():
    assert [img.default_nrow(n) for n in (1, 2, 4, 5, 64, 65)] == [1, 2, 2, 3, 8, 9]
    assert img.make_grid(np.zeros((10, 4, 4, 3), np.uint8)).shape == (3 * 6 + 2, 4 * 6 + 2, 3)


def test_png_carries_provenance_and_is_deterministic():
    im = np.random.RandomState(0).randint(0, 256, (8, 8, 3)).astype(np.uint8)
    meta = {"gan_serve.seeds": "0-3", "gan_serve.model": "m@sha256:abc"}
    a, b = img.encode_image(im, "png", meta), img.encode_image(im, "png", meta)
    assert a == b
    assert img.read_metadata(a) == meta
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(a))), im)


def _pillow_png(im: np.ndarray, meta: dict[str, str]) -> bytes:
    """What Pillow writes with a PngInfo of `meta`: the bytes encode_image must keep."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in meta.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    img.to_pil(im).save(buf, "PNG", pnginfo=info, compress_level=6)
    return buf.getvalue()


@pytest.mark.parametrize("shape", [(64, 64, 3), (64, 64, 1), (600, 600, 3)])  # the last: many IDATs
def test_png_bytes_equal_pillows_own_text_chunks(shape):
    im = np.random.RandomState(2).randint(0, 256, shape).astype(np.uint8)
    for seeds in ("0", "1-7", "0"):  # the per-chunk cache gives the same bytes on a hit
        meta = {"Software": "gan-serve", "gan_serve.seeds": seeds, "gan_serve.note": "Zoë ✓"}  # iTXt
        assert img.encode_image(im, "png", meta) == _pillow_png(im, meta)
    assert img.encode_image(im, "png") == _pillow_png(im, {})


@pytest.mark.parametrize("shape", [(64, 64, 3), (32, 32, 1)])
def test_png_encoder_renders_the_run_once_with_the_same_bytes(shape):
    meta = {"Software": "gan-serve", "gan_serve.note": "Zoë ✓", "gan_serve.n": 3}  # iTXt, JSON
    encode = img.png_encoder(meta, "gan_serve.seeds")
    for i, value in enumerate(["0", "12", "Zoë"]):
        im = np.random.RandomState(i).randint(0, 256, shape).astype(np.uint8)
        want = {**img._text(meta), "gan_serve.seeds": value}
        assert encode(im, value) == img.encode_image(im, "png", want) == _pillow_png(im, want)
    with pytest.raises(ValueError, match="per-image key"):
        img.png_encoder(meta, "Software")


@pytest.mark.parametrize("fmt,lossless", [("jpeg", False), ("webp", True)])
def test_jpeg_and_webp(fmt, lossless):
    im = np.random.RandomState(1).randint(0, 256, (16, 16, 3)).astype(np.uint8)
    data = img.encode_image(im, fmt, {"gan_serve.seeds": "1"})
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == fmt.upper()
    if lossless:
        assert np.array_equal(np.asarray(decoded.convert("RGB")), im)
    if fmt == "jpeg":
        assert json.loads(decoded.info["comment"])["gan_serve.seeds"] == "1"


def test_grayscale_images_stay_single_channel():
    data = img.encode_image(np.zeros((4, 4, 1), np.uint8), "png")
    assert Image.open(io.BytesIO(data)).mode == "L"


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animations_hold_every_frame(fmt):
    frames = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 100, 200)])
    anim = Image.open(io.BytesIO(img.encode_animation(frames, fmt, 50)))
    assert anim.n_frames == 3 and anim.is_animated


def test_format_from_suffix_and_conflicts():
    assert img.format_for("a.JPG", None, img.IMAGE_FORMATS) == "jpeg"
    assert img.format_for(None, "webp", img.IMAGE_FORMATS) == "webp"
    assert img.format_for(None, None, img.IMAGE_FORMATS) == "png"
    with pytest.raises(InputError, match="unknown format"):
        img.format_for(None, "bmp", img.IMAGE_FORMATS)
    with pytest.raises(InputError, match="does not match"):
        img.format_for("a.png", "jpeg", img.IMAGE_FORMATS)
    with pytest.raises(InputError, match="suffix"):
        img.format_for("a.tiff", None, img.IMAGE_FORMATS)
    with pytest.raises(InputError, match="not allowed"):
        img.format_for("a.gif", None, img.IMAGE_FORMATS)
