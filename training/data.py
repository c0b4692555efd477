"""Training data: a flat image folder, an ImageFolder-style tree, a zip, or builtin:avatars.

Every image is resized (shorter side) and center-cropped to the resolution, converted to RGB
or grey, and normalized to [-1, 1] to match G's tanh. The order of items is a function of
(seed, step) alone, so a resumed run reads exactly the batches an uninterrupted one would.

Files are data from anywhere: an image's declared size is checked before it is decoded
(decompression bombs), a zip member's declared and real size before it is read into memory.
Every open of a data file (at the start and during the run, when a file may have been swapped)
goes through `open_regular`: only a regular file, inside the data folder, opened without
blocking (a FIFO named x.png must not hang the run). What is skipped is counted.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import os
import stat
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from gan_serve.errors import InputError
from gan_serve.images import resize_center_crop

from .avatars import AvatarsDataset
from .config import MAX_IMAGE_PIXELS, TrainConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_MAX_PIXELS = TrainConfig.max_image_pixels  # per image; a 64x64 data set needs far fewer
UNREADABLE, TOO_LARGE, OUTSIDE = "unreadable", "too large", "links out of the data folder"
NOT_REGULAR = "not regular files (FIFOs, devices, sockets, folders)"
# a symlink loop is an OSError (ELOOP) like any file that cannot be read: counted as unreadable
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, zipfile.BadZipFile)


class Refused(Exception):
    """A data file skipped for a reason of its own (not a decode error): `reason` is its key in
    ImageFiles.skips, `what` says it of one file."""

    reason = what = UNREADABLE


class TooLarge(Refused):
    """An image (or zip member) declares more pixels (bytes) than the limit."""

    reason = what = TOO_LARGE


class NotRegular(Refused):
    """A FIFO, device, socket or folder where an image file was expected."""

    reason, what = NOT_REGULAR, "not a regular file"


class LinksOut(Refused):
    """A path that resolves outside the data folder (a symlink, or a linked folder on the way)."""

    reason, what = OUTSIDE, "a link out of the data folder"


# non-blocking: opening a FIFO for reading otherwise waits for a writer (each flag where the OS has it)
_FLAGS = os.O_RDONLY
for _flag in ("O_NONBLOCK", "O_NOCTTY", "O_CLOEXEC", "O_NOFOLLOW", "O_BINARY"):
    _FLAGS |= getattr(os, _flag, 0)


def open_regular(path: str | Path, root: Path | None = None) -> io.BufferedReader:
    """`path` opened for reading, if it is a regular file (inside `root`, a resolved folder,
    when given); else NotRegular or LinksOut, and OSError (ELOOP for a symlink loop) when it
    cannot be resolved or opened. Never blocks: a FIFO, device or socket is refused by its
    stat before any open, and the open itself is non-blocking and checked again by fstat, so
    a file swapped for a FIFO between the two checks cannot hang the caller either."""
    real = os.path.realpath(path, strict=True)
    if root is not None and not Path(real).is_relative_to(root):
        raise LinksOut(str(path))
    if not stat.S_ISREG(os.stat(real).st_mode):
        raise NotRegular(str(path))
    fd = os.open(real, _FLAGS)  # O_NOFOLLOW: a link swapped in since the realpath fails (ELOOP)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(str(path))
        if root is not None and not _opened_inside(fd, root):  # a folder on the way swapped for a link
            raise LinksOut(str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _opened_inside(fd: int, root: Path) -> bool:
    """Whether the open file lies in `root`, by the kernel's own name for it (Linux's /proc;
    elsewhere the check before the open stands alone)."""
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return True
    return Path(where.removesuffix(" (deleted)")).is_relative_to(root)


def to_tensor(im: Image.Image, resolution: int, channels: int) -> torch.Tensor:
    """Resize the shorter side, center-crop, and map to float (C, R, R) in [-1, 1]."""
    im = resize_center_crop(im.convert("L" if channels == 1 else "RGB"), resolution)
    x = np.asarray(im, dtype=np.float32).reshape(resolution, resolution, channels)
    return torch.from_numpy(x.transpose(2, 0, 1) / 127.5 - 1.0)


class ImageFiles(Dataset):
    """Images from a folder (searched recursively, so ImageFolder trees work) or a zip."""

    def __init__(self, source: str, resolution: int, channels: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.source, self.resolution, self.channels = Path(source), resolution, channels
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) \
                or not 1 <= max_pixels <= MAX_IMAGE_PIXELS:
            raise InputError(f"max_pixels must be an integer from 1 to {MAX_IMAGE_PIXELS:,}")
        # our own check after each header decides; PIL's (a DecompressionBombError past twice its
        # global limit) is left as PIL set it: nothing a data file or a saved run says changes it
        self.max_pixels = max_pixels
        self.max_bytes = 4 * max_pixels + (1 << 20)  # a file larger than its pixels uncompressed
        self.is_zip = self.source.suffix.lower() == ".zip"
        self.skips: collections.Counter[str] = collections.Counter()
        self.went_bad: set[str] = set()  # files that stopped decoding during the run
        self.items = []
        for name in self._list():  # header check only: fast, and catches non-images and truncation
            try:
                with self._image(name) as im:
                    im.verify()
                self.items.append(name)
            except Refused as exc:
                self.skips[exc.reason] += 1
            except _DECODE_ERRORS:
                self.skips[UNREADABLE] += 1
        if not self.items:
            raise InputError(f"no readable images in {str(self.source)!r} (looked for "
                             f"{', '.join(IMAGE_SUFFIXES)}{'; skipped ' if self.skips else ''}"
                             f"{self.skip_note()})")
        self._zip: zipfile.ZipFile | None = None

    @property
    def skipped(self) -> int:
        return sum(self.skips.values())

    def skip_note(self) -> str:
        """`3 unreadable, 1 too large (over N pixels)`: what was left out, by reason."""
        return ", ".join(f"{n} {why}" + (f" (over {self.max_pixels:,} pixels)" if why == TOO_LARGE else "")
                         for why, n in sorted(self.skips.items()))

    def _list(self) -> list[str]:
        if self.is_zip:
            try:
                with open_regular(self.source) as fh, zipfile.ZipFile(fh) as zf:
                    return sorted(n for n in zf.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
            except NotRegular:
                raise InputError(f"--data {str(self.source)!r} is not a regular file") from None
            except (OSError, zipfile.BadZipFile, ValueError):
                raise InputError(f"{str(self.source)!r} is not a readable zip file") from None
        if not self.source.is_dir():
            raise InputError(f"--data {str(self.source)!r} is neither a folder, a .zip, nor builtin:avatars")
        self.root = self.source.resolve()
        # names only: what each is (a link out, a loop, a FIFO) is found when it is opened
        return sorted(str(p) for p in self.source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)

    def _open(self, name: str) -> io.BufferedReader | io.BytesIO:
        if not self.is_zip:
            return open_regular(name, self.root)
        if getattr(self, "_zip", None) is None:
            self._zip = zipfile.ZipFile(open_regular(self.source))  # one per worker process, kept open
        info = self._zip.getinfo(name)
        if info.file_size > self.max_bytes:  # what the zip declares, before reading a byte
            raise TooLarge(name)
        with self._zip.open(info) as fh:  # and what it really holds (zipfile stops at the declared size)
            data = fh.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise TooLarge(name)
        return io.BytesIO(data)

    @contextlib.contextmanager
    def _image(self, name: str) -> Iterator[Image.Image]:
        """Open an image lazily and refuse it before decoding when it declares too many pixels."""
        with self._open(name) as fh:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit decides
                try:
                    im = Image.open(fh)
                except Image.DecompressionBombError:
                    raise TooLarge(name) from None
            with im:
                if im.width * im.height > self.max_pixels:
                    raise TooLarge(name)
                yield im

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        # A file that passed the header check can still fail to decode (a truncated JPEG, a file
        # replaced during the run): take the next readable one, a choice that depends on the files
        # alone (resume-safe), and say so once per file.
        for offset in range(len(self.items)):
            name = self.items[(index + offset) % len(self.items)]
            try:
                with self._image(name) as im:
                    return to_tensor(im, self.resolution, self.channels)
            except (Refused, *_DECODE_ERRORS) as exc:
                self._went_bad(name, exc)
        raise InputError(f"none of the {len(self.items)} images in {str(self.source)!r} decodes")

    def _went_bad(self, name: str, exc: Exception) -> None:
        if name not in self.went_bad:
            self.went_bad.add(name)
            why = exc.what if isinstance(exc, Refused) else UNREADABLE
            print(f"data: skipping {name} ({why} since the run started); {len(self.went_bad)} "
                  "such file(s) so far", file=sys.stderr)


def load_dataset(data: str, resolution: int, channels: int, size: int = 50_000,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Dataset:
    if data == "builtin:avatars":
        return AvatarsDataset(size, resolution, channels)
    if data.startswith("builtin:"):
        raise InputError(f"unknown built-in data set {data!r}; there is builtin:avatars")
    return ImageFiles(data, resolution, channels, max_pixels)


def describe(dataset: Dataset, data: str) -> str:
    note = dataset.skip_note() if isinstance(dataset, ImageFiles) and dataset.skipped else ""
    return f"{data}: {len(dataset)} images" + (f" (skipped: {note})" if note else "")


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

    def __iter__(self):
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
