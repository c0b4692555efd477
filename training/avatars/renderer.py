"""Rendering `builtin:avatars`: palettes, the attributes of an index, and layer templates.

An avatar is drawn once per (style, shift, scale) as a *template*: for every pixel, how many
of its supersamples show each layer (background, hair, skin, iris, ...). Rendering an index
then only paints the template's layers with that index's colours, so it costs a few
microseconds, and every edge is anti-aliased. numpy and Pillow only.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64  # the native resolution; the decoder and the metric work at this size
RESOLUTIONS = (32, 64, 128)
SUPERSAMPLED = 256  # templates are drawn at >= this size and box-filtered down (anti-aliasing)

# Palettes: two colours of one factor lie >= 100 RGB units apart, and every hair colour as far
# from every background and from the shirt, so a 50/50 blend of two modes lies more than
# decoder.MATCH from both even after shading.
BACKGROUNDS = {"sky": (100, 200, 245), "rose": (250, 130, 170), "mint": (150, 235, 145),
               "violet": (170, 105, 230)}
HAIR = {"black": (35, 30, 45), "brown": (135, 80, 35), "blonde": (245, 210, 90),
        "red": (225, 45, 85), "blue": (50, 95, 220)}
STYLES = ("short", "twintails", "long")
EYES = {"blue": (40, 120, 235), "green": (40, 165, 75), "ruby": (190, 30, 70),
        "amber": (235, 150, 20)}
SKIN = (255, 226, 200)
N_MODES = len(BACKGROUNDS) * len(HAIR) * len(STYLES) * len(EYES)  # 240

# Layers of a template; a pixel's colour is the coverage-weighted sum of its layers' colours.
LAYERS = ("bg", "hair", "shine", "skin", "shirt", "white", "iris", "pupil", "line", "blush", "mouth")
BG, HAIR_L, SHINE, SKIN_L, SHIRT, WHITE, IRIS, PUPIL, LINE, BLUSH, MOUTH = range(len(LAYERS))
FIXED = {SKIN_L: SKIN, SHIRT: (250, 250, 252), WHITE: (255, 255, 255), LINE: (70, 40, 50),
         BLUSH: (252, 170, 175), MOUTH: (200, 70, 85)}

# Nuisance per index: the face moves by JITTER px, is scaled by one of SCALES, and the three
# factor colours are shaded by up to SHADE in every channel.
JITTER = 2
SCALES = (0.95, 1.0, 1.05)
SHADE = 8
CENTER = (32.0, 31.0)  # face centre at zero jitter


@dataclass(frozen=True)
class Attributes:
    """The discrete factors of one avatar; `mode` numbers their combination 0..N_MODES-1."""

    background: str
    hair: str
    style: str
    eyes: str

    @property
    def mode(self) -> int:
        """The mode number: ((background * 5 + hair) * 3 + style) * 4 + eyes."""
        b, h = list(BACKGROUNDS).index(self.background), list(HAIR).index(self.hair)
        s, e = STYLES.index(self.style), list(EYES).index(self.eyes)
        return ((b * len(HAIR) + h) * len(STYLES) + s) * len(EYES) + e

    @classmethod
    def from_mode(cls, mode: int) -> Attributes:
        """The attributes of mode number `mode` (0..N_MODES-1)."""
        if not 0 <= mode < N_MODES:
            raise ValueError(f"mode must be in 0..{N_MODES - 1}, got {mode}")
        mode, e = divmod(mode, len(EYES))
        mode, s = divmod(mode, len(STYLES))
        b, h = divmod(mode, len(HAIR))
        return cls(list(BACKGROUNDS)[b], list(HAIR)[h], STYLES[s], list(EYES)[e])


@dataclass(frozen=True)
class Nuisance:
    """The continuous-looking variation of one index: position, size and colour shade."""

    jx: int  # horizontal shift, px at 64x64
    jy: int
    scale: int  # index into SCALES
    shade: tuple[int, int, int]  # added to the background, hair and eye colours


def attributes(index: int) -> Attributes:
    """The attributes of item `index`: modes cycle with the index, so each is equally common."""
    return Attributes.from_mode(_check_index(index) % N_MODES)


def _check_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"an avatar index is a non-negative integer, got {index!r}")
    return int(index)


def _mix(index: int) -> int:
    # splitmix64: cheap, well mixed, and the same on every platform and numpy version
    z = (index * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def nuisance(index: int) -> Nuisance:
    """The position, size and shade of item `index` (independent of its mode)."""
    z, span, shades = _mix(_check_index(index)), 2 * JITTER + 1, 2 * SHADE + 1
    z, jx = divmod(z, span)
    z, jy = divmod(z, span)
    z, scale = divmod(z, len(SCALES))
    z, s0 = divmod(z, shades)
    z, s1 = divmod(z, shades)
    s2 = z % shades
    return Nuisance(jx - JITTER, jy - JITTER, scale, (s0 - SHADE, s1 - SHADE, s2 - SHADE))


def layer_colors(a: Attributes, shade: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """(len(LAYERS), 3) float32 colours of the layers of `a`, shaded by `shade`."""
    bg, hair, eye = ([min(255, max(0, c + d)) for c in rgb] for rgb, d in
                     ((BACKGROUNDS[a.background], shade[0]), (HAIR[a.hair], shade[1]),
                      (EYES[a.eyes], shade[2])))
    return colors_from(bg, hair, eye)


def colors_from(bg: Sequence[float], hair: Sequence[float], eye: Sequence[float]) -> np.ndarray:
    """Layer colours from the three factor colours (the other layers are fixed or derived)."""
    out = _FIXED_COLORS.copy()
    out[BG], out[HAIR_L], out[IRIS] = bg, hair, eye
    out[SHINE] = np.rint(0.55 * out[HAIR_L] + 0.45 * 255)
    out[PUPIL] = np.rint(0.45 * out[IRIS])
    return out


_FIXED_COLORS = np.zeros((len(LAYERS), 3), np.float32)
for _layer, _rgb in FIXED.items():
    _FIXED_COLORS[_layer] = _rgb


def render(index: int, resolution: int = SIZE) -> np.ndarray:
    """Item `index` as (resolution, resolution, 3) uint8; the same index always gives the same
    bytes. `resolution` is 32, 64 or 128, drawn as such (not resized from 64)."""
    a, nz = attributes(index), nuisance(index)
    pure, mixed_at, mixed_cover = _sparse(a.style, nz.jx, nz.jy, nz.scale, _check_resolution(resolution))
    colors = layer_colors(a, nz.shade)
    out = colors.astype(np.uint8)[pure]
    # integer counts times integer colours, divided by a power of two: exact in float32
    # whatever order the product sums in, so the bytes are the same on every machine
    total = _supersampling(resolution) ** 2
    out[mixed_at] = np.floor((mixed_cover @ colors + total // 2) / total)
    return out.reshape(resolution, resolution, 3)


def _check_resolution(resolution: int) -> int:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"builtin:avatars comes at resolution 32, 64 or 128, not {resolution!r}")
    return int(resolution)


def _supersampling(resolution: int) -> int:
    return max(4, SUPERSAMPLED // resolution)


def template(style: str, jx: int, jy: int, scale: int, resolution: int = SIZE) -> np.ndarray:
    """Coverage counts (R, R, len(LAYERS)) uint8 of one style, shift (px at 64x64) and scale
    index: how many of a pixel's subsamples show each layer (16 per pixel at 64x64)."""
    ss = _supersampling(_check_resolution(resolution))
    k = resolution * ss / SIZE  # canvas px per 64x64 px
    labels = Image.new("L", (resolution * ss,) * 2, BG)
    _draw(ImageDraw.Draw(labels), style, CENTER[0] + jx, CENTER[1] + jy, SCALES[scale], k)
    lab = np.asarray(labels, dtype=np.int64)
    ys, xs = np.indices(lab.shape)
    cell = (ys // ss) * resolution + xs // ss  # the output pixel of each subsample
    counts = np.bincount((cell * len(LAYERS) + lab).ravel(), minlength=resolution**2 * len(LAYERS))
    return counts.reshape(resolution, resolution, len(LAYERS)).astype(np.uint8)


@functools.lru_cache(maxsize=1024)
def _sparse(style: str, jx: int, jy: int, scale: int,
            resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # (main layer of each pixel (R*R,) uint8, mixed edge pixels (M,), their counts (M, L) float32)
    cover = template(style, jx, jy, scale, resolution).reshape(-1, len(LAYERS))
    pure = cover.argmax(axis=1).astype(np.uint8)
    mixed_at = np.flatnonzero(cover.max(axis=1) < _supersampling(resolution) ** 2)
    return pure, mixed_at, cover[mixed_at].astype(np.float32)


def _draw(d: ImageDraw.ImageDraw, style: str, cx: float, cy: float, s: float, k: float) -> None:
    # Paints layer numbers, back to front. Shapes are in 64x64 px relative to the face centre
    # (cx, cy), scaled by s; k is canvas px per 64x64 px.

    def xy(*pts: float) -> list[float]:
        return [(cx + p * s if i % 2 == 0 else cy + p * s) * k for i, p in enumerate(pts)]

    def ell(layer: int, x0: float, y0: float, x1: float, y1: float) -> None:
        d.ellipse(xy(x0, y0, x1, y1), fill=layer)

    def rect(layer: int, x0: float, y0: float, x1: float, y1: float) -> None:
        d.rectangle(xy(x0, y0, x1, y1), fill=layer)

    def poly(layer: int, *pts: float) -> None:
        d.polygon(xy(*pts), fill=layer)

    # behind the head: the hair that gives each style its silhouette
    if style == "long":
        ell(HAIR_L, -22, -25, 22, 8)
        rect(HAIR_L, -22, -8, 22, 40)
    else:
        ell(HAIR_L, -21, -25, 21, 8)  # a bob framing the face down to the jaw
        rect(HAIR_L, -21, -8, 21, 8)
    ell(SHIRT, -25, 20, 25, 50)  # shoulders
    rect(SKIN_L, -4.5, 10, 4.5, 22)  # neck
    poly(SHIRT, -7, 19, 0, 26, 7, 19)  # collar notch drawn over the neck
    poly(MOUTH, 0, 25, -6, 22, -6, 29)  # ribbon bow
    poly(MOUTH, 0, 25, 6, 22, 6, 29)
    if style == "long":  # long hair falls in front of the shoulders
        rect(HAIR_L, -22, 16, -13, 40)
        rect(HAIR_L, 13, 16, 22, 40)
    if style == "twintails":
        for side in (-1, 1):
            poly(HAIR_L, side * 16, -16, side * 24, -14, side * 31, 2, side * 31, 16,
                 side * 27, 26, side * 24, 16, side * 20, 0)
            ell(WHITE, side * 20 - 3, -17, side * 20 + 3, -11)  # hair tie
    ell(SKIN_L, -15, -16, 15, 17)  # face
    # front hair: crown, a zigzag fringe and side locks framing the cheeks
    ell(HAIR_L, -19, -25, 19, -2)
    poly(HAIR_L, -16, -8, -11, -1, -8, -7, -3, 0, 0, -7, 4, 0, 7, -7, 11, -1, 16, -8)
    for side in (-1, 1):
        poly(HAIR_L, side * 19, -10, side * 12, -6, side * 14, 6, side * 17, 12, side * 20, 4)
    d.arc(xy(-13, -21, 13, -5), 205, 335, fill=SHINE, width=max(1, round(2 * s * k)))
    for side in (-1, 1):  # big anime eyes: a flat iris, a small pupil, one highlight
        ex = side * 7.5
        ell(WHITE, ex - 5, -1.5, ex + 5, 11)
        ell(IRIS, ex - 4.5, -1, ex + 4.5, 11)
        ell(PUPIL, ex - 1.8, 1.5, ex + 1.8, 5.5)
        ell(WHITE, ex - 3.8, -0.2, ex - 0.8, 2.8)  # highlight
        d.arc(xy(ex - 6, -2, ex + 6, 10), 195, 345, fill=LINE, width=max(1, round(1.6 * s * k)))
        ell(BLUSH, ex + side * 4 - 2.5, 11.5, ex + side * 4 + 2.5, 13.5)
    d.chord(xy(-3, 11.5, 3, 15.5), 0, 180, fill=MOUTH)
