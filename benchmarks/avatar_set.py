"""builtin:avatars at 64x64 as a benchmark set for train_recipes.py: 240 modes, scored by the decoder.

The set is the first `AVATARS_SIZE` images of builtin:avatars drawn at 64x64 (what gan-train
trains the bundled model on), rendered once and cached as uint8 so that the reference loop and
gan-train read the same images from memory at the same cost. Generated samples are mapped to
uint8 as gan-serve maps them and decoded by `training.avatars` (the bundled model's metric):
modes covered (of 240), KL of the high-quality samples' mode histogram to uniform, and the
share of high-quality samples (reported in the "confidence" column of train_recipes' table).
Early in a run, when next to no sample passes the decoder, the Fréchet distance between the
random-feature statistics of the samples and of as many real avatars (training/quality.py,
gan-train's checkpoint score on other data) still tells the runs apart: lower is better.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmarks.digits import ModeScore
from gan_serve.fsutil import write_bytes_atomic
from gan_serve.images import to_uint8

AVATARS_SIZE, AVATARS_RESOLUTION = 20_000, 64


class Avatars(Dataset):
    """The first `size` avatars, (3, 64, 64) float in [-1, 1], from a uint8 cache."""

    name, channels, resolution, modes = "avatars", 3, AVATARS_RESOLUTION, 240

    def __init__(self, cache: Path, size: int = AVATARS_SIZE) -> None:
        path = cache / f"avatars-{size}-{AVATARS_RESOLUTION}.npy"
        if not path.exists():
            from training.avatars.renderer import render

            images = np.stack([render(i, AVATARS_RESOLUTION) for i in range(size)])
            buf = io.BytesIO()
            np.save(buf, images.transpose(0, 3, 1, 2).copy())
            write_bytes_atomic(path, buf.getvalue())
        self.images = torch.from_numpy(np.load(path))  # (N, 3, 64, 64) uint8

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].float() / 127.5 - 1.0


def score_avatars(images: torch.Tensor, real: Avatars) -> ModeScore:
    """Decode (N, 3, 64, 64) samples in [-1, 1] with the builtin:avatars metric, and compare
    their feature statistics with those of the first N images of `real`."""
    from training.avatars.metric import coverage_report
    from training.quality import feature_stats, frechet_distance

    u8 = to_uint8(images.float().numpy())
    r = coverage_report(u8)
    reference = real.images[:len(u8)].permute(0, 2, 3, 1).numpy()
    fd = frechet_distance(feature_stats(reference), feature_stats(u8))
    return ModeScore(r.modes_covered, r.modes_total, r.kl_to_uniform, r.high_quality, r.samples,
                     frechet=fd)
