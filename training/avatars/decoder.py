"""Reading avatars back: which mode an image shows, and whether it is a faithful rendering.

1. Layout: the image's skin-likeness map is correlated with that of every (shift, scale)
   template; the best match says where the face is and how big.
2. Colours: the background, hair and eye colours are the medians of pixels that show that
   layer in every style of the layout; each is read as the nearest palette colour.
3. Style: each style's template, painted with the colours read, is compared with the image
   region by region (a region: pixels that show the same layer in each style), on the core
   of each region only (pixels at least EDGE px from any edge, so blur and sub-pixel shifts
   do not count). The style whose worst region fits best is the style read.

An image is *high quality* when every colour read lies within MATCH RGB units of its palette
colour and every region core of the chosen template within MATCH (RMS) of the image: the
face, hair silhouette, background and eyes are all where and what a rendering has them.
Renders score <= 14 (their shading); a 50/50 blend of two modes scores > 40 whichever factor
differs; noise and flat images score in the hundreds.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from .renderer import (
    BACKGROUNDS,
    BG,
    EYES,
    HAIR,
    HAIR_L,
    IRIS,
    JITTER,
    LAYERS,
    SCALES,
    SIZE,
    SKIN,
    STYLES,
    Attributes,
    colors_from,
    template,
)

MATCH = 36.0  # RGB units: the largest colour or region misfit of a high-quality image
EDGE = 2  # px: region cores keep this far from the region's edges
MIN_REGION = 8  # core pixels a region needs to be checked
SKIN_SCALE = 60.0  # skin-likeness falls from 1 at SKIN to 0 this far away
_CHUNK = 512  # images decoded at a time (bounds the float copies to ~25 MB)
_FULL = 16  # coverage count of a pixel covered by one layer at 64x64 (4x4 subsamples)
_KEYS = list(itertools.product(range(-JITTER, JITTER + 1), range(-JITTER, JITTER + 1),
                               range(len(SCALES))))


@dataclass(frozen=True)
class Decoded:
    """What one image shows."""

    attributes: Attributes
    high_quality: bool  # a faithful rendering of `attributes`
    distance: float  # worst colour or region misfit, RGB units


@dataclass(frozen=True)
class DecodedArrays:
    """A batch decoded into arrays (what the metric uses)."""

    modes: np.ndarray  # (N,) int64 mode numbers
    high_quality: np.ndarray  # (N,) bool
    distance: np.ndarray  # (N,) float32


@dataclass(frozen=True)
class _Layout:
    # what the decoder needs about one (shift, scale): indices into the 64*64 pixels

    bg_at: np.ndarray  # background core in every style
    hair_at: np.ndarray  # hair core in every style
    eye_at: np.ndarray  # fully iris in every style
    core: np.ndarray  # region cores, each region's pixels together
    starts: np.ndarray  # (G,) where each region starts in `core`
    sizes: np.ndarray  # (G,) float32 pixels per region core
    labels: np.ndarray  # (len(STYLES), G) the layer each style shows in each region


def _skin(pixels: np.ndarray) -> np.ndarray:
    # skin-likeness in [0, 1] of pixels (n, 3, P), as (n, P) float32
    d = pixels - np.float32(SKIN)[:, None]
    return np.maximum(0.0, 1.0 - np.sqrt(np.einsum("ncp,ncp->np", d, d)) / SKIN_SCALE)


@functools.lru_cache(maxsize=1)
def _skin_templates() -> tuple[np.ndarray, np.ndarray]:
    # skin-likeness of a render in every layout (keys, 64*64), and its sums (keys,)
    colors = colors_from(BACKGROUNDS["sky"], HAIR["black"], EYES["blue"])
    painted = np.stack([(template(STYLES[0], *key).reshape(-1, len(LAYERS)) @ colors).T / _FULL
                        for key in _KEYS]).astype(np.float32)
    skin = _skin(painted)
    return skin, skin.sum(1)


def _locate(pixels: np.ndarray) -> np.ndarray:
    # the layout of each image (n, 3, 64*64) whose skin T agrees best with the image's skin s:
    # argmax of sum(T * s) - sum(T * (1 - s)), pixels skin in both minus skin in T only
    templates, sums = _skin_templates()
    return (2 * _skin(pixels) @ templates.T - sums).argmax(1)


@functools.lru_cache(maxsize=len(_KEYS))
def _layout(k: int) -> _Layout:
    covers = np.stack([template(style, *_KEYS[k]) for style in STYLES])  # (S, 64, 64, L)
    labels = covers.argmax(-1)  # (S, 64, 64)
    pure = (covers.max(-1) == _FULL).all(0)
    region = np.zeros((SIZE, SIZE), np.int64)  # the layer of each style, as one number
    for s in range(len(STYLES)):
        region = region * len(LAYERS) + labels[s]
    padded = np.pad(region, EDGE, constant_values=-1)  # the image border is an edge too
    core = pure.copy()
    for dy, dx in itertools.product(range(2 * EDGE + 1), repeat=2):
        core &= padded[dy : dy + SIZE, dx : dx + SIZE] == region

    eye = (labels == IRIS).all(0) & pure  # eroded by one pixel: the eyes are small
    padded = np.pad(eye, 1)
    eye &= padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]

    def everywhere(layer: int, mask: np.ndarray) -> np.ndarray:
        return np.flatnonzero(mask & (labels == layer).all(0))

    at = np.flatnonzero(core)
    at = at[np.argsort(region.ravel()[at], kind="stable")]
    _, sizes = np.unique(region.ravel()[at], return_counts=True)
    at = at[np.repeat(sizes >= MIN_REGION, sizes)]  # drop regions too small to judge
    _, starts, sizes = np.unique(region.ravel()[at], return_index=True, return_counts=True)
    return _Layout(everywhere(BG, core), everywhere(HAIR_L, core), np.flatnonzero(eye),
                   at, starts, sizes.astype(np.float32),
                   labels.reshape(len(STYLES), -1)[:, at[starts]])


def _nearest(colors: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    # index of the nearest palette colour and the distance to it, for colours (n, 3)
    ref = np.asarray(list(palette.values()), np.float32)
    dist = np.linalg.norm(colors[:, None, :] - ref[None], axis=-1)
    return dist.argmin(1), dist.min(1)


def decode_arrays(images: np.ndarray) -> DecodedArrays:
    """Decode uint8 images (N, 64, 64, 3) into mode numbers, quality flags and distances."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 3) or images.dtype != np.uint8:
        raise ValueError(f"the avatars decoder reads uint8 (N, {SIZE}, {SIZE}, 3) images, "
                         f"got {images.dtype} {images.shape}")
    n = len(images)
    modes, distance = np.zeros(n, np.int64), np.zeros(n, np.float32)
    for start in range(0, n, _CHUNK):
        chunk = images[start : start + _CHUNK]
        pixels = chunk.transpose(0, 3, 1, 2).reshape(len(chunk), 3, -1).astype(np.float32)
        best = _locate(pixels)
        for k in np.unique(best):
            rows = np.flatnonzero(best == k)
            modes[start + rows], distance[start + rows] = _read(pixels[rows], _layout(int(k)))
    return DecodedArrays(modes, distance <= MATCH, distance)


def _read(pixels: np.ndarray, lay: _Layout) -> tuple[np.ndarray, np.ndarray]:
    # modes and distances of images (n, 3, 64*64) that share one layout
    bg = np.median(pixels[:, :, lay.bg_at], axis=2)
    hair = np.median(pixels[:, :, lay.hair_at], axis=2)
    eye = np.median(pixels[:, :, lay.eye_at], axis=2)
    (b, db), (h, dh), (e, de) = (_nearest(bg, BACKGROUNDS), _nearest(hair, HAIR),
                                 _nearest(eye, EYES))
    colors = np.stack([colors_from(*c) for c in zip(bg, hair, eye, strict=True)])  # (n, L, 3)
    # RMS distance of each region core to a flat colour c, from its moments:
    # mean |x - c|^2 = mean |x|^2 - 2 c . mean x + |c|^2
    inside = pixels[:, :, lay.core]  # (n, 3, P)
    sq = inside[:, 0] ** 2 + inside[:, 1] ** 2 + inside[:, 2] ** 2
    mean = (np.add.reduceat(inside, lay.starts, axis=2) / lay.sizes).transpose(0, 2, 1)  # (n, G, 3)
    mean_sq = np.add.reduceat(sq, lay.starts, axis=1) / lay.sizes  # (n, G)
    worst = np.empty((len(STYLES), len(pixels)), np.float32)
    for s in range(len(STYLES)):
        c = colors[:, lay.labels[s]]  # (n, G, 3)
        mse = mean_sq - 2 * np.einsum("ngc,ngc->ng", c, mean) + np.einsum("ngc,ngc->ng", c, c)
        worst[s] = np.sqrt(np.maximum(mse, 0.0)).max(1)
    style = worst.argmin(0)
    modes = ((b * len(HAIR) + h) * len(STYLES) + style) * len(EYES) + e
    return modes, np.maximum.reduce([db, dh, de, worst.min(0)])


def decode(images: np.ndarray) -> list[Decoded]:
    """Decode uint8 images (N, 64, 64, 3): per image the attributes it shows best, whether it
    is a high-quality rendering of them, and its worst misfit in RGB units (see module doc)."""
    arrays = decode_arrays(images)
    return [Decoded(Attributes.from_mode(int(m)), bool(q), float(d))
            for m, q, d in zip(arrays.modes, arrays.high_quality, arrays.distance, strict=True)]
