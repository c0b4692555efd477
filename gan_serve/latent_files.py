"""Key latents from `.npy` files (`interpolate --latents`) and request bodies (base64 `.npy` or
lists of numbers).

A `.npy` header declares a shape and a dtype; nothing here believes them until they are
checked: float values, 1 or 2 dimensions of positive integers (a `True` is not a 1), at most
MAX_LATENT_VALUES, and exactly as many data bytes after the header as it declares. A list of
files is counted and every header checked before any file's data is read, so 130 files of
33 MB are refused by their headers (a few KB read), not after 4.3 GB.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np

from .errors import InputError, first_line
from .limits import DEFAULT_LIMITS

MAX_LATENT_VALUES = DEFAULT_LIMITS.max_keys * 1024  # key latents in one request: 4096 of z_dim 1024
T = TypeVar("T")


@dataclass(frozen=True)
class NpyHeader:
    """What a checked `.npy` header declares: float `dtype` values shaped (keys, z_dim)."""

    keys: int
    z_dim: int
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return self.keys * self.z_dim * self.dtype.itemsize


def read_header(fh: BinaryIO, size: int) -> NpyHeader:
    """The header of the `.npy` of `size` bytes that `fh` is at, checked; reads nothing more.
    ValueError (one line) for anything but a latent array whose data is all present."""
    from numpy.lib import format as npy

    begin = fh.tell()
    version = npy.read_magic(fh)
    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f".npy format version {version[0]}.{version[1]}; latents use 1.0 or 2.0")
    shape, fortran_order, dtype = readers[version](fh)
    if (dtype.kind != "f" or not 1 <= len(shape) <= 2
            or any(type(d) is not int or d < 1 for d in shape)
            or math.prod(shape) > MAX_LATENT_VALUES):
        raise ValueError(f"it declares {str(dtype)[:40]} values of shape {str(shape)[:60]}; latents "
                         f"are at most {MAX_LATENT_VALUES:,} floats, shaped (K, z_dim) or (z_dim,) "
                         "with every size a positive integer")
    keys, z_dim = (1, *shape) if len(shape) == 1 else shape
    header = NpyHeader(keys, z_dim, dtype, bool(fortran_order))
    present = size - (fh.tell() - begin)
    if present != header.nbytes:
        raise ValueError(f"its header declares {header.nbytes:,} bytes of data, but {present:,} "
                         "follow it")
    return header


def read_data(fh: BinaryIO, header: NpyHeader) -> np.ndarray:
    """(keys, z_dim) float32 from the data after a checked header."""
    data = fh.read(header.nbytes)
    if len(data) != header.nbytes:  # the file shrank since its header was checked
        raise ValueError(f"{header.nbytes:,} bytes of data declared, {len(data):,} read")
    order = "F" if header.fortran_order else "C"
    array = np.frombuffer(data, header.dtype).reshape((header.keys, header.z_dim), order=order)
    return np.array(array, dtype=np.float32, order="C")


def _open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file (a FIFO would block forever)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError("not a regular file")
    return os.fdopen(fd, "rb")


def _with_file(path: Path, read: Callable[[BinaryIO, int], T]) -> T:
    """`read(fh, size)` on the regular file `path`; its faults as one-line InputErrors."""
    try:
        with _open_regular(path) as fh:
            return read(fh, os.fstat(fh.fileno()).st_size)
    except (OSError, ValueError, EOFError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
        raise InputError(f"cannot read latents from {str(path)!r}: {why}") from None


def read_latents(paths: Sequence[Path], max_keys: int = DEFAULT_LIMITS.max_keys) -> np.ndarray:
    """Key latents (K, z_dim) from .npy files, concatenated in order (`--latents A --latents B`).
    Every header is checked and the keys counted before any data is read."""
    if not paths:
        raise InputError("no latent files given")
    if len(paths) > max_keys:  # every file holds at least one key
        raise InputError(f"{len(paths):,} latent files; an interpolation passes through at most "
                         f"{max_keys:,} keys")
    headers = [_with_file(p, read_header) for p in paths]
    keys = sum(h.keys for h in headers)
    if keys > max_keys or keys * headers[0].z_dim > MAX_LATENT_VALUES:
        raise InputError(f"the latent files hold {keys:,} keys of z_dim {headers[0].z_dim}; an "
                         f"interpolation passes through at most {max_keys:,} keys and "
                         f"{MAX_LATENT_VALUES:,} values")
    if len({h.z_dim for h in headers}) > 1:
        raise InputError(f"latent files have different z sizes: "
                         f"{', '.join(str(h.z_dim) for h in headers)}")

    def data(fh: BinaryIO, size: int) -> np.ndarray:
        return read_data(fh, read_header(fh, size))  # checked again: the file may have changed

    arrays = [_with_file(p, data) for p in paths]
    if len({a.shape[1] for a in arrays}) > 1:
        raise InputError("latent files changed while they were read")
    return np.concatenate(arrays)


def decode_latents(value: str | Sequence[Sequence[float]]) -> np.ndarray:
    """Key latents from a request body: base64 of a .npy file, or a list of lists of numbers."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
            fh = io.BytesIO(raw)
            return read_data(fh, read_header(fh, len(raw)))
        except (binascii.Error, ValueError, EOFError) as exc:
            raise InputError(f"latents: not base64 of a .npy file ({first_line(exc)})") from None
    wrong = InputError(f"latents must be a list of equally long lists of numbers (K, z_dim), at "
                       f"most {MAX_LATENT_VALUES:,} numbers")
    try:
        rows = [list(r) for r in value]
        if not rows or len({len(r) for r in rows}) != 1 or sum(map(len, rows)) > MAX_LATENT_VALUES:
            raise wrong
        array = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):  # not numbers
        raise wrong from None
    if array.ndim != 2:  # rows of lists
        raise wrong
    return array
