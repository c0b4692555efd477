"""Pixels, grids and image files: the one owner of the pixel and grid contracts.

numpy and Pillow only (the ONNX serving path must not import torch).
Arrays are uint8 NHWC (images) or HWC (one image/grid); generator output is float NCHW.
"""

from __future__ import annotations

import functools
import io
import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from .errors import InputError

IMAGE_FORMATS = ("png", "jpeg", "webp")
ANIMATION_FORMATS = ("gif", "webp")
# .mp4 and .webm are videos, written by gan_serve.video (the `video` extra)
SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".gif": "gif",
            ".mp4": "mp4", ".webm": "webm"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif", "mp4": ".mp4",
              "webm": ".webm"}
JPEG_QUALITY = 95
# The largest side each encoder writes (libjpeg: 65,500; WebP: 14 bits; GIF: 16 bits; PNG: 31),
# checked before generation and again before encoding, so an oversized grid or strip is one line.
MAX_SIDE = {"png": 2**31 - 1, "jpeg": 65_500, "webp": 16_383, "gif": 65_535}
DURATION_MS = (10, 10_000)  # animation frame duration


def to_uint8(x: np.ndarray, output_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Map generator output (N, C, H, W) in `output_range` to uint8 (N, H, W, C).

    For [-1, 1] this is round((x + 1) * 127.5) clamped to [0, 255]; NaN maps to 0.
    """
    lo, hi = float(output_range[0]), float(output_range[1])
    x = np.asarray(x, dtype=np.float32)
    scaled = (x - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    out = np.clip(np.rint(np.nan_to_num(scaled, nan=0.0)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1))


def default_nrow(n: int) -> int:
    """Images per grid row when the user gives none: ceil(sqrt(n))."""
    return max(1, math.ceil(math.sqrt(n)))


def check_nrow(nrow: int | None) -> int | None:
    """Images per grid row: None (the default) or an integer of at least 1."""
    if nrow is not None and (isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer))
                             or nrow < 1):
        raise InputError(f"nrow must be an integer of at least 1, got {nrow!r}")
    return nrow


def grid_shape(n: int, h: int, w: int, nrow: int | None = None, padding: int = 2) -> tuple[int, int]:
    """(height, width) of the make_grid of `n` images of h x w, known before any image exists."""
    xmaps = min(default_nrow(n) if check_nrow(nrow) is None else int(nrow), n)
    ymaps = math.ceil(n / xmaps)
    return ymaps * (h + padding) + padding, xmaps * (w + padding) + padding


def check_size(height: int, width: int, fmt: str, what: str = "the image") -> None:
    """Refuse an image that `fmt`'s encoder cannot write, before it is made."""
    side = MAX_SIDE[fmt]
    if height > side or width > side:
        raise InputError(f"{what} would be {width:,}x{height:,} pixels; {fmt} allows at most "
                         f"{side:,} a side (use png, or fewer images per row with nrow)")


def check_duration(duration_ms: int) -> int:
    """An animation frame's duration in ms, 10..10000."""
    lo, hi = DURATION_MS
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, (int, np.integer)) \
            or not lo <= duration_ms <= hi:
        raise InputError(f"frame duration must be {lo}..{hi} ms, got {duration_ms!r}")
    return int(duration_ms)


def make_grid(
    images: np.ndarray, nrow: int | None = None, padding: int = 2, pad_value: int = 0
) -> np.ndarray:
    """Tile (N, H, W, C) uint8 images like torchvision's make_grid: `nrow` per row, 2 px padding."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] < 1:
        raise InputError("make_grid needs a non-empty (N, H, W, C) array")
    n, h, w, c = images.shape
    height, width = grid_shape(n, h, w, nrow, padding)
    xmaps = (width - padding) // (w + padding)
    cell_h, cell_w = h + padding, w + padding
    grid = np.full((height, width, c), pad_value, np.uint8)
    for i in range(n):
        y, x = divmod(i, xmaps)
        top, left = y * cell_h + padding, x * cell_w + padding
        grid[top : top + h, left : left + w] = images[i]
    return grid


def to_pil(image: np.ndarray) -> Image.Image:
    """HWC uint8 (C = 1 or 3) to a PIL image (mode L or RGB)."""
    image = np.asarray(image, dtype=np.uint8)
    return Image.fromarray(image[..., 0], "L") if image.shape[-1] == 1 else Image.fromarray(image)


def resize_center_crop(image: Image.Image, resolution: int) -> Image.Image:
    """The shorter side resized to `resolution` (bicubic), then the centre square cropped: how
    gan-train reads its data and how `project` reads its targets."""
    w, h = image.size
    scale = resolution / min(w, h)
    image = image.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))),
                         Image.Resampling.BICUBIC)
    left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))


def format_for(path: str | Path | None, fmt: str | None, allowed: Sequence[str]) -> str:
    """Decide the file format from an explicit `fmt` and/or the path's suffix."""
    if fmt is not None:
        fmt = fmt.lower().replace("jpg", "jpeg")
        if fmt not in allowed:
            raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(allowed)}")
    if path is not None and str(path) == "-":  # stdout: the format comes from fmt or the default
        path = None
    suffix_fmt = SUFFIXES.get(Path(path).suffix.lower()) if path else None
    if path is not None and suffix_fmt is None and fmt is None:  # e.g. a FIFO with --format
        raise InputError(
            f"cannot tell the format of {str(path)!r} from its suffix; "
            f"use one of {', '.join(EXTENSIONS[f] for f in allowed)}"
        )
    if fmt and suffix_fmt and fmt != suffix_fmt:
        raise InputError(f"--format {fmt} does not match the suffix of {str(path)!r}")
    chosen = fmt or suffix_fmt or allowed[0]
    if chosen not in allowed:
        raise InputError(f"format {chosen!r} is not allowed here; choose one of {', '.join(allowed)}")
    return chosen


def _text(metadata: Mapping[str, object]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def encode_image(
    image: np.ndarray, fmt: str = "png", metadata: Mapping[str, object] | None = None
) -> bytes:
    """Encode one HWC uint8 image; `metadata` goes into PNG text chunks, a JPEG comment,
    or WebP XMP. The bytes depend only on the pixels and the metadata."""
    fmt = format_for(None, fmt, IMAGE_FORMATS)
    check_size(*np.shape(image)[:2], fmt)
    text = _text(metadata or {})
    pil = to_pil(image)
    if fmt == "png":
        return _with_text(_png(pil), text)
    buf = io.BytesIO()
    if fmt == "jpeg":
        pil.save(buf, "JPEG", quality=JPEG_QUALITY, comment=json.dumps(text).encode())
    else:
        pil.save(buf, "WEBP", lossless=True, xmp=_xmp(text))
    return buf.getvalue()


def png_encoder(metadata: Mapping[str, object], key: str) -> Callable[[np.ndarray, str], bytes]:
    """`encode(image, value)`: the bytes of `encode_image(image, "png", {**metadata, key: value})`
    (`key` not in `metadata`) for many images of one run: `metadata`'s text chunks are rendered
    once, and only `key`'s, whose value (a seed) changes from image to image, each time."""
    if key in metadata:
        raise ValueError(f"{key!r} is the per-image key; it cannot be in the run's metadata")
    head = b"".join(_text_chunk(k, v) for k, v in _text(metadata).items())

    def encode(image: np.ndarray, value: str) -> bytes:
        check_size(*np.shape(image)[:2], "png")
        return _splice(_png(to_pil(image)), head + _render_text_chunk(key, value))

    return encode


def _png(pil: Image.Image) -> bytes:
    """The PNG Pillow writes with no pnginfo, zlib level 6 (files keep their bytes)."""
    buf = io.BytesIO()
    pil.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


_IHDR_END = 8 + 4 + 4 + 13 + 4  # PNG signature, then IHDR: length, type, 13 bytes, CRC


def _with_text(png: bytes, text: Mapping[str, str]) -> bytes:
    """`png` (as Pillow writes it with no pnginfo) with `text`'s chunks right after IHDR: the
    bytes Pillow writes with a PngInfo of the same text, built once per key and value (most of
    them repeat from image to image) instead of once per image."""
    return _splice(png, b"".join(_text_chunk(k, v) for k, v in text.items()))


def _splice(png: bytes, chunks: bytes) -> bytes:
    return png[:_IHDR_END] + chunks + png[_IHDR_END:]


def _render_text_chunk(key: str, value: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)  # tEXt, or iTXt for text that is not Latin-1
    ((cid, data, *_),) = info.chunks
    return (len(data).to_bytes(4, "big") + cid + data
            + zlib.crc32(data, zlib.crc32(cid)).to_bytes(4, "big"))


_text_chunk = functools.lru_cache(maxsize=512)(_render_text_chunk)


def encode_animation(
    frames: np.ndarray,
    fmt: str = "gif",
    duration_ms: int = 80,
    metadata: Mapping[str, object] | None = None,
) -> bytes:
    """Encode (T, H, W, C) uint8 frames as a looping animated GIF or WebP."""
    fmt = format_for(None, fmt, ANIMATION_FORMATS)
    check_duration(duration_ms)
    check_size(*np.shape(frames)[1:3], fmt, "each frame")
    pils = [to_pil(f) for f in frames]
    text = _text(metadata or {})
    buf = io.BytesIO()
    if fmt == "gif":
        comment = json.dumps(text).encode()
        pils[0].save(buf, "GIF", save_all=True, append_images=pils[1:], duration=duration_ms,
                     loop=0, comment=comment, optimize=False)
    else:
        pils[0].save(buf, "WEBP", save_all=True, append_images=pils[1:], duration=duration_ms,
                     loop=0, lossless=True, xmp=_xmp(text))
    return buf.getvalue()


def _xmp(text: Mapping[str, str]) -> bytes:
    from xml.sax.saxutils import quoteattr

    attrs = " ".join(f"gs:{k.replace('-', '_')}={quoteattr(v)}" for k, v in text.items())
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:gs="https://gan-serve/ns/1.0/" {attrs}/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


def read_metadata(data: bytes) -> dict[str, str]:
    """Read back the provenance text of a PNG written by encode_image (for tests and users)."""
    with Image.open(io.BytesIO(data)) as im:
        return dict(getattr(im, "text", {}) or {})
