"""Training data: a flat image folder, an ImageFolder-style tree, a zip, or builtin:avatars.

Every image is resized (shorter side) and center-cropped to the resolution, converted to RGB
or grey, and normalized to [-1, 1] to match G's tanh. The order of items is a function of
(seed, step) alone, so a resumed run reads exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from gan_serve.errors import InputError

from .avatars import AvatarsDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def to_tensor(im: Image.Image, resolution: int, channels: int) -> torch.Tensor:
    """Resize the shorter side, center-crop, and map to float (C, R, R) in [-1, 1]."""
    im = im.convert("L" if channels == 1 else "RGB")
    w, h = im.size
    scale = resolution / min(w, h)
    im = im.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))),
                   Image.Resampling.BICUBIC)
    left, top = (im.width - resolution) // 2, (im.height - resolution) // 2
    im = im.crop((left, top, left + resolution, top + resolution))
    x = np.asarray(im, dtype=np.float32).reshape(resolution, resolution, channels)
    return torch.from_numpy(x.transpose(2, 0, 1) / 127.5 - 1.0)


class ImageFiles(Dataset):
    """Images from a folder (searched recursively, so ImageFolder trees work) or a zip."""

    def __init__(self, source: str, resolution: int, channels: int) -> None:
        self.source, self.resolution, self.channels = Path(source), resolution, channels
        self.is_zip = self.source.suffix.lower() == ".zip"
        names = self._list()
        self.items, self.skipped = [], 0
        for name in names:  # header check only: fast, and catches non-images and truncation
            try:
                with Image.open(self._open(name)) as im:
                    im.verify()
                self.items.append(name)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
                self.skipped += 1
        if not self.items:
            skipped = f"; skipped {self.skipped} unreadable" if self.skipped else ""
            raise InputError(f"no readable images in {str(self.source)!r} (looked for "
                             f"{', '.join(IMAGE_SUFFIXES)}{skipped})")
        self._zip: zipfile.ZipFile | None = None

    def _list(self) -> list[str]:
        if self.is_zip:
            if not zipfile.is_zipfile(self.source):
                raise InputError(f"{str(self.source)!r} is not a readable zip file")
            with zipfile.ZipFile(self.source) as zf:
                return sorted(n for n in zf.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
        if not self.source.is_dir():
            raise InputError(f"--data {str(self.source)!r} is neither a folder, a .zip, nor builtin:avatars")
        return sorted(str(p) for p in self.source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)

    def _open(self, name: str) -> io.BytesIO | str:
        if not self.is_zip:
            return name
        if getattr(self, "_zip", None) is None:
            self._zip = zipfile.ZipFile(self.source)  # one handle per worker process
        return io.BytesIO(self._zip.read(name))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        # A file that passed the header check can still fail to decode (a truncated JPEG):
        # take the next readable one, a choice that depends on the files alone (resume-safe).
        for offset in range(len(self.items)):
            name = self.items[(index + offset) % len(self.items)]
            try:
                with Image.open(self._open(name)) as im:
                    return to_tensor(im, self.resolution, self.channels)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
                continue
        raise InputError(f"none of the {len(self.items)} images in {str(self.source)!r} decodes")


def load_dataset(data: str, resolution: int, channels: int, size: int = 50_000) -> Dataset:
    if data == "builtin:avatars":
        return AvatarsDataset(size, resolution, channels)
    if data.startswith("builtin:"):
        raise InputError(f"unknown built-in data set {data!r}; there is builtin:avatars")
    return ImageFiles(data, resolution, channels)


def describe(dataset: Dataset, data: str) -> str:
    skipped = getattr(dataset, "skipped", 0)
    return f"{data}: {len(dataset)} images" + (f" ({skipped} unreadable files skipped)" if skipped else "")


def derived_seed(*keys: int) -> int:
    """A 63-bit seed that is a pure function of `keys` (numpy's SeedSequence mixing)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))


DATA_STREAM, LATENT_STREAM, CALIBRATION_STREAM, NOISE_STREAM, AUGMENT_STREAM = 1, 2, 3, 4, 5  # independent


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(derived_seed(seed, DATA_STREAM, epoch))
    return tuple(torch.randperm(n, generator=g).tolist())


def batch_indices(step: int, n: int, batch: int, seed: int, rank: int = 0, world: int = 1) -> list[int]:
    """The dataset indices of `rank`'s share of global batch `step`: epoch permutations seeded
    by (seed, epoch), read in order, so any step's batch can be recomputed."""
    start = step * batch * world + rank * batch
    out: list[int] = []
    while len(out) < batch:
        epoch, pos = divmod(start + len(out), n)
        take = min(batch - len(out), n - pos)
        out.extend(_epoch_permutation(n, seed, epoch)[pos : pos + take])
    return out


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler yielding the index lists of steps start..steps-1 (n_d D batches per step)."""

    def __init__(self, n: int, batch: int, seed: int, start: int, steps: int, per_step: int,
                 rank: int = 0, world: int = 1) -> None:
        self.args = (n, batch, seed, rank, world)
        self.start, self.steps, self.per_step = start, steps, per_step

    def __iter__(self):  # noqa: ANN204
        n, batch, seed, rank, world = self.args
        for step in range(self.start * self.per_step, self.steps * self.per_step):
            yield batch_indices(step, n, batch, seed, rank, world)

    def __len__(self) -> int:
        return (self.steps - self.start) * self.per_step


def probe(dataset: Dataset, seed: int, n: int = 256) -> torch.Tensor:
    """Up to `n` items of the data set, stacked (the first of epoch 0): what the range check
    and the real-diversity reference look at before training starts."""
    idx = batch_indices(0, len(dataset), min(n, len(dataset)), seed)
    return torch.stack([dataset[i] for i in idx])
