"""Images to project (`gan-serve project IMAGE...`, `POST /project`, `G.project(images)`): any
file Pillow reads, of any size and mode, bounded before it is decoded, then brought to the
model's resolution and channels the way `gan-train` brings its training images there.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError
from .images import resize_center_crop

MAX_INPUT_PIXELS = 2**26  # 8192 x 8192: a photo fits; a header declaring more is refused unread
MAX_INPUT_BYTES = 64 * 2**20  # an image file read for projection
BACKGROUND = (255, 255, 255)  # what transparent pixels become (a web image's usual backdrop)

TargetSource = str | os.PathLike | bytes | Image.Image | np.ndarray


@dataclass(frozen=True)
class Target:
    """One image to project: its pixels at the model's size, and where they came from."""

    pixels: np.ndarray  # (R, R, C) uint8, R the model's resolution, C its channels
    sha256: str  # of the file's bytes (of the array's bytes for an in-memory image)
    name: str  # file stem, or "image<i>" for in-memory images


def fit(image: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """`image` as (R, R, C) uint8: EXIF orientation applied, transparency over white, 16-bit
    grey scaled to 8 bits, then (as gan-train's data loader) the shorter side resized to R
    (bicubic) and the centre cropped."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):  # 16-bit grey: Pillow's convert clips instead of scaling
        image = Image.fromarray((np.asarray(image, np.float64) / 257).round().astype(np.uint8))
    elif image.mode in ("I", "F"):
        image = Image.fromarray(np.clip(np.asarray(image, np.float64), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, BACKGROUND)
        image.paste(rgba, mask=rgba.getchannel("A"))
    image = resize_center_crop(image.convert("L" if channels == 1 else "RGB"), resolution)
    return np.asarray(image, np.uint8).reshape(resolution, resolution, channels)


def decode(data: bytes, name: str, resolution: int, channels: int) -> Target:
    """A Target from an image file's bytes; one-line InputError for anything else or too large."""
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{name}: {len(data):,} bytes; an image to project is at most "
                         f"{MAX_INPUT_BYTES:,} bytes")
    try:
        with warnings.catch_warnings():  # Pillow warns from 89 M pixels; our bound comes next
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        w, h = image.size  # from the header: nothing is decoded yet
        if w * h > MAX_INPUT_PIXELS:
            raise InputError(f"{name}: {w:,}x{h:,} pixels; an image to project has at most "
                             f"{MAX_INPUT_PIXELS:,} pixels")
        image.load()
    except InputError:
        raise
    except Image.DecompressionBombError:  # Pillow's own bound, far above ours: the same refusal
        raise InputError(f"{name}: an image to project has at most {MAX_INPUT_PIXELS:,} pixels; "
                         "this one declares more") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{name}: not an image Pillow can read ({why})") from None
    pixels = fit(image, resolution, channels)
    return Target(pixels, hashlib.sha256(data).hexdigest(), name)


def read(path: str | os.PathLike, resolution: int, channels: int) -> Target:
    """A Target from an image file (bounded in bytes and pixels before it is decoded)."""
    path = Path(path)
    try:
        if not path.is_file():
            raise InputError(f"no such image file: {str(path)!r}")
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise InputError(f"{path.name}: {path.stat().st_size:,} bytes; an image to project is "
                             f"at most {MAX_INPUT_BYTES:,} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    target = decode(data, path.name, resolution, channels)
    return Target(target.pixels, target.sha256, path.stem)


def of(source: TargetSource, index: int, resolution: int, channels: int) -> Target:
    """A Target from a path, file bytes, a PIL image or a uint8 (H, W[, C]) array."""
    if isinstance(source, bytes):
        return decode(source, f"image{index}", resolution, channels)
    if isinstance(source, (str, os.PathLike)):
        return read(source, resolution, channels)
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3) or (
                source.ndim == 3 and source.shape[2] not in (1, 3, 4)):
            raise InputError(f"an image array must be uint8 (H, W) or (H, W, C) with C 1, 3 or 4, "
                             f"got {source.dtype} {source.shape}")
        if source.shape[0] * source.shape[1] > MAX_INPUT_PIXELS:
            raise InputError(f"an image to project has at most {MAX_INPUT_PIXELS:,} pixels")
        sha = hashlib.sha256(np.ascontiguousarray(source).tobytes()).hexdigest()
        squeezed = source[..., 0] if source.ndim == 3 and source.shape[2] == 1 else source
        return Target(fit(Image.fromarray(squeezed), resolution, channels), sha, f"image{index}")
    if isinstance(source, Image.Image):
        if source.width * source.height > MAX_INPUT_PIXELS:
            raise InputError(f"an image to project has at most {MAX_INPUT_PIXELS:,} pixels")
        pixels = fit(source, resolution, channels)
        sha = hashlib.sha256(np.asarray(source.convert("RGBA")).tobytes()).hexdigest()
        return Target(pixels, sha, f"image{index}")
    raise InputError(f"cannot project a {type(source).__name__}; give image paths, file bytes, "
                     "PIL images or uint8 arrays")
