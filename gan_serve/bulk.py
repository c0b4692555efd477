"""Many image files at once (`generate --individual DIR`): generation overlapped with encoding,
bounded memory for any number of seeds, and durability once per batch instead of per file.

Crash safety is the same as one `write_bytes_atomic` per file: every image is written under a
hidden temp name, the batch's data is flushed to disk (one `syncfs` where the OS has it, else
an fsync per file), and only then are the temp files renamed to their final names and the
folder fsynced once. A final name therefore always holds a complete file.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import outputs as out
from .errors import OutputError
from .fsutil import _write_into, clean_stale_temps, writes_through
from .protocols import ImageGenerator
from .request import DEFAULT_LIMITS, Limits
from .runtime import thread_count

CHUNK = 256  # images generated per step (fewer for large images); two chunks at most in memory

SLICE = 16  # images one encoder job encodes and writes
Chunks = Iterable[tuple[Sequence[int], np.ndarray]]  # (seeds, their uint8 images)
Encoder = Callable[[int, np.ndarray], bytes]  # (seed, image) -> the file's bytes


def chunk_for(G: ImageGenerator, limits: Limits = DEFAULT_LIMITS) -> int:
    """Images generated per step for G: CHUNK, fewer where CHUNK images would exceed the output
    budget (a chunk is one request's worth of pixels)."""
    size = G.img_resolution
    limits.check_pixels(size * size, f"one image of {size}x{size}")
    return min(CHUNK, limits.images_within(size))


def generated_chunks(G: ImageGenerator, seeds: Iterable[int], truncation: float,
                     chunk: int | None = None) -> Iterator[tuple[list[int], np.ndarray]]:
    """Generate `seeds` `chunk` (default: chunk_for(G)) at a time (any count, constant memory)."""
    chunk = chunk or chunk_for(G)
    batch: list[int] = []
    for s in seeds:
        batch.append(s)
        if len(batch) == chunk:
            yield batch, G.generate(batch, truncation)
            batch = []
    if batch:
        yield batch, G.generate(batch, truncation)


def missing_seeds(folder: Path, seeds: Iterable[int], fmt: str) -> list[int]:
    """The seeds whose `seed<SEED>.<ext>` is not in `folder` yet (all of them when there is no
    folder). A final name only ever holds a complete file, so what exists is done: this is how
    a re-run resumes, and one listing of the folder answers for any number of seeds."""
    try:
        with os.scandir(folder) as entries:
            present = {e.name for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        present = set()
    return [s for s in seeds if out.seed_filename(s, fmt) not in present]


def _libc_syncfs() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux
        return None
    fn.argtypes = [ctypes.c_int]
    return fn


_SYNCFS = _libc_syncfs()


def _flush(folder: Path, temps: list[Path]) -> None:
    """Make the data of `temps` durable: one syncfs for the folder's filesystem, else fsyncs."""
    if _SYNCFS is not None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for t in temps:
        with open(t, "rb+") as fh:
            os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every OS lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Batch:
    """The temp files of one chunk, renamed together once their data is on disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # fsutil's temp names, one token per chunk (the names differ by seed): a killed run's
        # leftovers are recognised and removed by the next
        self.temp = f".{{}}.gs{os.getpid()}-{secrets.token_hex(4)}.tmp"
        self.jobs: list[Future] = []
        self.files: list[tuple[Path, Path]] = []  # (temp, final)

    def add(self, pool: ThreadPoolExecutor, encode: Encoder, seeds: Sequence[int],
            images: np.ndarray, fmt: str) -> None:
        """Encode and write the chunk's files in jobs of SLICE images (one job per image cost
        as much CPU as the file's own writing: futures, wake-ups, the GIL handed back and forth)."""
        for i in range(0, len(seeds), SLICE):
            finals = [self.folder / out.seed_filename(s, fmt) for s in seeds[i : i + SLICE]]
            temps = [self.folder / self.temp.format(f.name) for f in finals]
            self.files += zip(temps, finals, strict=True)
            self.jobs.append(pool.submit(_write_slice, encode, seeds[i : i + SLICE],
                                         images[i : i + SLICE], temps))

    def commit(self) -> int:
        for fut in self.jobs:
            fut.result()
        _flush(self.folder, [tmp for tmp, _ in self.files])
        for tmp, final in self.files:
            if writes_through(final):  # a FIFO or device is written into; a link is refused
                _write_into(final, tmp)
                tmp.unlink()
            else:
                os.replace(tmp, final)
        _fsync_dir(self.folder)
        done, self.jobs, self.files = len(self.files), [], []
        return done

    def discard(self) -> None:
        for fut in self.jobs:
            fut.cancel()
            with contextlib.suppress(Exception):
                fut.result()
        for tmp, _ in self.files:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self.jobs, self.files = [], []


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _write_slice(encode: Encoder, seeds: Sequence[int], images: np.ndarray, temps: list[Path]) -> None:
    for seed, image, tmp in zip(seeds, images, temps, strict=True):
        _write_file(tmp, encode(seed, image))


def _write_file(tmp: Path, data: bytes) -> None:
    """A new file holding `data`: no Python file object, whose buffer is one more copy."""
    fd = os.open(tmp, _NEW_FILE, 0o666)  # mode 0666 & ~umask, like any other output
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def write_individual(G: ImageGenerator, chunks: Chunks, folder: Path, truncation: float, fmt: str,
                     progress: Callable[[int], None] | None = None,
                     workers: int | None = None, clean: bool = True) -> int:
    """Write one `seed<SEED>.<ext>` per image of `chunks` into `folder`; return the count.

    Encoding runs in a thread pool (Pillow's encoders release the GIL) while the next chunk is
    generated; a chunk's files appear under their final names only once all of them are
    on disk. On any error the unfinished chunks' temp files are removed. `clean=False` leaves
    other writers' stale temp files alone (a cluster job cleans once, on its driver).
    """
    pending: list[_Batch] = []
    written = 0
    if clean:
        clean_stale_temps(folder)
    encode = out.single_encoder(G, truncation, fmt)
    pool = ThreadPoolExecutor(workers or thread_count(), thread_name_prefix="gan-serve-encode")
    try:
        for seeds, images in chunks:  # generating this chunk overlaps encoding the previous one
            batch = _Batch(folder)
            pending.append(batch)
            batch.add(pool, encode, seeds, images, fmt)
            if len(pending) > 1:
                written += _commit(pending, progress)
        while pending:
            written += _commit(pending, progress)
    except OSError as exc:
        raise OutputError(f"cannot write into {str(folder)!r}: {exc.strerror or exc}") from None
    finally:
        for batch in pending:
            batch.discard()
        pool.shutdown(wait=True, cancel_futures=True)
    return written


def _commit(pending: list[_Batch], progress: Callable[[int], None] | None) -> int:
    done = pending[0].commit()  # stays pending (and is cleaned up) if the commit fails
    pending.pop(0)
    if progress:
        progress(done)
    return done
