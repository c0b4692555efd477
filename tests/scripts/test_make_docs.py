"""scripts/make_docs.py: the progress rows rendered from generator files (--checkpoint) are the
samples grids gan-train writes, and the video poster is the video's own first frame."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gan_serve
from gan_serve.arch import DCGANGenerator
from gan_serve.checkpoint import save_native
from gan_serve.errors import CheckpointError
from gan_serve.images import make_grid
from gan_serve.spec import DCGANConfig, ModelSpec

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_docs.py"


@pytest.fixture(scope="module")
def make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkpoint(path: Path, step: int) -> Path:
    """A tiny 64x64 generator file that says which training step it is, as gan-train's do."""
    config = DCGANConfig(z_dim=4, widths=[2, 2, 2, 2], channels=3)
    torch.manual_seed(step)
    spec = ModelSpec(config=config.to_dict(), z_dim=4, img_resolution=64, channels=3,
                     training={"step": step, "trainer": "gan-train"})
    return save_native(DCGANGenerator(config).eval(), spec, path)


def test_progress_rows_from_checkpoints_are_their_samples_grids(make_docs, tmp_path):
    files = [checkpoint(tmp_path / f"g{step}.safetensors", step) for step in (3000, 29000)]
    out = tmp_path / "progress.png"
    make_docs.progress_of(files, out)
    picture = np.asarray(Image.open(out).convert("RGB"))
    tile, label_w = make_docs.TILE, 70
    assert picture.shape == (2 * tile, label_w + 8 * tile, 3)
    for row, path in enumerate(files):
        # gan-train's samples/step_N.png is `gan-serve generate --seed 0 --n 64` on the checkpoint
        grid = make_grid(gan_serve.load(path, backend="torch", precision="fp32").generate(range(64)))
        want = grid[:tile, : 8 * tile]  # the first 8 samples, the bottom padding row left out
        assert np.array_equal(picture[row * tile : (row + 1) * tile, label_w:], want)
    # the step labels sit in the white margin, one per row
    assert (picture[:tile, :label_w] < 128).any() and (picture[tile:, :label_w] < 128).any()


def test_progress_refuses_a_file_that_is_no_generator(make_docs, tmp_path):
    (tmp_path / "notes.safetensors").write_text("not a model")
    with pytest.raises(CheckpointError):
        make_docs.progress_of([tmp_path / "notes.safetensors"], tmp_path / "progress.png")


def test_progress_refuses_a_generator_that_names_no_step(make_docs, tmp_path):
    config = DCGANConfig(z_dim=4, widths=[2, 2, 2, 2], channels=3)
    spec = ModelSpec(config=config.to_dict(), z_dim=4, img_resolution=64, channels=3)
    path = save_native(DCGANGenerator(config).eval(), spec, tmp_path / "g.safetensors")
    with pytest.raises(SystemExit, match="no training step"):
        make_docs.progress_of([path], tmp_path / "progress.png")
    assert not (tmp_path / "progress.png").exists()


def test_poster_is_the_first_frame_as_a_player_decodes_it(make_docs, tmp_path):
    out = tmp_path / "poster.png"
    make_docs.poster(out)  # the CLI on the bundled model, PyAV (the video extra) to decode
    frame = np.asarray(Image.open(out)).astype(int)
    assert frame.shape == (128, 128, 3)  # --scale 2 of a 64x64 frame, as a player shows it
    frames = gan_serve.load().interpolate([3, 17, 42], steps=16, loop=True)
    first, seed17 = (f.repeat(2, axis=0).repeat(2, axis=1).astype(int) for f in (frames[0], frames[15]))
    # lossy (yuv420p, CRF 10), but seed 3's frame: far closer to it than to seed 17's
    assert np.abs(frame - first).mean() < 4 < np.abs(frame - seed17).mean()
