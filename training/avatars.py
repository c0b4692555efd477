"""`builtin:avatars`: procedural anime-style faces with known discrete modes, and a decoder.

Four backgrounds x five hair colours x three hair styles x four eye colours = 240 modes,
drawn with Pillow at 4x and downsampled, with a small per-index jitter of position and
shade so the data set is not 240 fixed pictures. The decoder reads the attributes back from
pixels (face found by its skin colour, then colour patches sampled around it) and says
whether an image is a *high-quality* rendering. From it, `coverage_report` gives the
offline analogue of the stacked-MNIST tables of the VEEGAN/PacGAN papers: modes covered,
share of high-quality samples, and the KL divergence of the mode histogram to uniform.
numpy and Pillow only (torch only inside `AvatarsDataset`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SS = 4  # supersampling factor for anti-aliased edges
# palettes: every two colours of a factor at least 85 RGB units apart, so a 50/50 blend of two
# modes lands more than MATCH from both
BACKGROUNDS = {"sky": (120, 190, 250), "rose": (245, 135, 165), "mint": (140, 230, 150),
               "lilac": (195, 150, 245)}
HAIR = {"black": (35, 30, 45), "brown": (125, 70, 35), "blonde": (240, 205, 90),
        "red": (205, 45, 50), "blue": (55, 95, 215)}
STYLES = ("short", "twintails", "long")
EYES = {"blue": (40, 120, 235), "green": (40, 165, 75), "ruby": (190, 30, 70),
        "amber": (235, 150, 20)}
SKIN = (255, 226, 200)
N_MODES = len(BACKGROUNDS) * len(HAIR) * len(STYLES) * len(EYES)  # 240
CENTER = (32.0, 34.0)  # nominal face centre; renders jitter it by up to 2 px

MATCH = 36.0  # max RGB distance of a patch mean to its palette colour (renders: <= 21)
FLAT = 28.0  # max RGB std inside a patch that should be one flat colour
SKIN_MATCH = 30.0  # tighter than MATCH: blends of blonde hair and lilac look nearly skin-coloured
MIN_SKIN = 200  # pixels of skin colour a face must show (a full face shows about 330)


@dataclass(frozen=True)
class Attributes:
    background: str
    hair: str
    style: str
    eyes: str

    @property
    def mode(self) -> int:
        b, h = list(BACKGROUNDS).index(self.background), list(HAIR).index(self.hair)
        s, e = STYLES.index(self.style), list(EYES).index(self.eyes)
        return ((b * len(HAIR) + h) * len(STYLES) + s) * len(EYES) + e

    @classmethod
    def from_mode(cls, mode: int) -> Attributes:
        mode, e = divmod(mode % N_MODES, len(EYES))
        mode, s = divmod(mode, len(STYLES))
        b, h = divmod(mode, len(HAIR))
        return cls(list(BACKGROUNDS)[b], list(HAIR)[h], STYLES[s], list(EYES)[e])


def attributes(index: int) -> Attributes:
    """The attributes of data-set item `index` (modes cycle, so every mode is equally common)."""
    return Attributes.from_mode(index % N_MODES)


def _shade(rgb: tuple[int, int, int], delta: int) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c + delta))) for c in rgb)  # type: ignore[return-value]


def render(index: int) -> np.ndarray:
    """Item `index` as a (64, 64, 3) uint8 image; the same index always gives the same bytes."""
    a = attributes(index)
    rng = np.random.RandomState(index % (2**32))
    jx, jy = rng.randint(-2, 3, size=2)
    shade = rng.randint(-12, 13, size=3)
    return _draw(a, float(jx), float(jy), shade)


def _draw(a: Attributes, jx: float, jy: float, shade: np.ndarray) -> np.ndarray:
    bg, hair = _shade(BACKGROUNDS[a.background], shade[0]), _shade(HAIR[a.hair], shade[1])
    eye = _shade(EYES[a.eyes], shade[2])
    im = Image.new("RGB", (SIZE * SS, SIZE * SS), bg)
    d = ImageDraw.Draw(im)
    cx, cy = CENTER[0] + jx, CENTER[1] + jy

    def ell(x0: float, y0: float, x1: float, y1: float, fill: tuple) -> None:
        d.ellipse([x0 * SS, y0 * SS, x1 * SS, y1 * SS], fill=fill)

    if a.style == "long":  # hair falling behind the face to the bottom edge
        ell(cx - 23, cy - 24, cx + 23, cy + 10, hair)
        d.rectangle([(cx - 23) * SS, (cy - 7) * SS, (cx + 23) * SS, SIZE * SS], fill=hair)
    if a.style == "twintails":
        ell(cx - 31, cy - 8, cx - 17, cy + 22, hair)
        ell(cx + 17, cy - 8, cx + 31, cy + 22, hair)
    ell(cx - 16, cy - 17, cx + 16, cy + 18, SKIN)  # face
    ell(cx - 19, cy - 24, cx + 19, cy - 3, hair)  # crown and bangs
    for side in (-1, 1):
        ex = cx + side * 7
        ell(ex - 5, cy - 3, ex + 5, cy + 9, (255, 255, 255))  # sclera
        ell(ex - 4, cy - 1, ex + 4, cy + 9, eye)  # big anime iris
        ell(ex - 3, cy, ex - 1, cy + 2, (255, 255, 255))  # highlight
        ell(ex + side * 6 - 3, cy + 9, ex + side * 6 + 3, cy + 12, (250, 180, 180))  # blush
    d.chord([(cx - 3) * SS, (cy + 11) * SS, (cx + 3) * SS, (cy + 15) * SS], 0, 180, fill=(190, 70, 80))
    return np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.uint8)


# ---- decoding ---------------------------------------------------------------------------

def _calibrate() -> tuple[float, float]:
    """Offset between the skin-pixel centroid and the drawn face centre (no jitter)."""
    im = _draw(Attributes("sky", "black", "short", "blue"), 0.0, 0.0, np.zeros(3, int))
    mask = np.linalg.norm(im.astype(float) - SKIN, axis=-1) < SKIN_MATCH
    ys, xs = np.nonzero(mask)
    return xs.mean() - CENTER[0], ys.mean() - CENTER[1]


_OFFSET = _calibrate()
# patches (dx, dy) relative to the face centre, each sampled as a 3x3 mean
_HAIR_AT = (0, -18)
_EYES_AT = ((-7, 6), (7, 6))
_TAILS_AT = ((-25, 8), (25, 8))
_LONG_AT = ((-18, 26), (18, 26))
_BG_AT = ((1, 1), (SIZE - 4, 1))  # absolute: the top corners are background in every style


def _patch(im: np.ndarray, x: float, y: float) -> tuple[np.ndarray, float]:
    x0, y0 = int(round(x)) - 1, int(round(y)) - 1
    if not (x0 >= 0 and y0 >= 0 and x0 + 3 <= im.shape[1] and y0 + 3 <= im.shape[0]):
        return np.full(3, -1000.0), 1e9
    p = im[y0 : y0 + 3, x0 : x0 + 3].reshape(-1, 3).astype(float)
    return p.mean(0), float(p.std(0).max())


def _nearest(color: np.ndarray, palette: dict[str, tuple]) -> tuple[str, float]:
    names = list(palette)
    dist = np.linalg.norm(np.asarray([palette[n] for n in names], float) - color, axis=1)
    return names[int(dist.argmin())], float(dist.min())


@dataclass
class Decoded:
    attributes: Attributes | None  # None when no face was found
    high_quality: bool  # every patch flat and close to its palette colour, layout consistent
    worst_distance: float  # largest patch-to-palette distance (RGB units)


def decode_one(im: np.ndarray) -> Decoded:
    """Read the attributes of one (64, 64, 3) uint8 image."""
    im = np.asarray(im, dtype=np.uint8)
    skin = np.linalg.norm(im.astype(float) - SKIN, axis=-1) < SKIN_MATCH
    if skin.sum() < MIN_SKIN:
        return Decoded(None, False, math.inf)
    ys, xs = np.nonzero(skin)
    cx, cy = xs.mean() - _OFFSET[0], ys.mean() - _OFFSET[1]
    worst, flat_ok = 0.0, True

    def read(points: list[tuple[float, float]], palette: dict) -> str:
        nonlocal worst, flat_ok
        means = [_patch(im, x, y) for x, y in points]
        name, dist = _nearest(np.mean([m for m, _ in means], 0), palette)
        worst = max(worst, dist, *(_nearest(m, {name: palette[name]})[1] for m, _ in means))
        flat_ok &= all(s < FLAT for _, s in means)
        return name

    bg = read(list(_BG_AT), BACKGROUNDS)
    hair = read([(cx + _HAIR_AT[0], cy + _HAIR_AT[1])], HAIR)
    eyes = read([(cx + dx, cy + dy) for dx, dy in _EYES_AT], EYES)
    both = {"hair": HAIR[hair], "bg": BACKGROUNDS[bg]}
    tails = read([(cx + dx, cy + dy) for dx, dy in _TAILS_AT], both)
    long_ = read([(cx + dx, cy + dy) for dx, dy in _LONG_AT], both)
    if tails == "hair" and long_ == "hair":
        return Decoded(Attributes(bg, hair, "long", eyes), False, worst)  # no such style
    style = "twintails" if tails == "hair" else "long" if long_ == "hair" else "short"
    return Decoded(Attributes(bg, hair, style, eyes), flat_ok and worst < MATCH, worst)


def decode(images: np.ndarray) -> list[Decoded]:
    """Decode a batch of (N, 64, 64, 3) uint8 images."""
    return [decode_one(im) for im in np.asarray(images)]


# ---- the metric -------------------------------------------------------------------------

@dataclass
class CoverageReport:
    """How well a sampler covers the 240 modes (read: covered near 100%, high quality near
    100%, KL near 0; a collapsed generator covers few modes with a large KL)."""

    samples: int
    modes_covered: int  # modes with at least one high-quality sample
    modes_total: int
    high_quality: float  # share of samples decoded as a valid rendering
    kl_to_uniform: float  # KL(mode histogram of high-quality samples || uniform), nats

    @property
    def coverage(self) -> float:
        return self.modes_covered / self.modes_total

    def to_dict(self) -> dict:
        return {**asdict(self), "coverage": self.coverage}

    def render(self) -> str:
        return (f"{self.modes_covered}/{self.modes_total} modes covered ({self.coverage:.1%}), "
                f"{self.high_quality:.1%} high-quality samples, KL to uniform "
                f"{self.kl_to_uniform:.3f} (on {self.samples} samples)")


def coverage_report(images: np.ndarray) -> CoverageReport:
    """Decode uint8 (N, 64, 64, 3) samples and summarise their mode coverage."""
    decoded = decode(images)
    modes = [d.attributes.mode for d in decoded if d.high_quality and d.attributes]
    hist = np.bincount(np.asarray(modes, int), minlength=N_MODES).astype(float)
    if hist.sum():
        p = hist / hist.sum()
        kl = float(np.sum(p[p > 0] * np.log(p[p > 0] * N_MODES)))
    else:
        kl = math.inf
    return CoverageReport(len(decoded), int((hist > 0).sum()), N_MODES,
                          len(modes) / max(len(decoded), 1), kl)


def evaluate_generator(G: object, n: int = 10_000, seed0: int = 0, chunk: int = 1000,
                       progress: Callable[[int], None] | None = None) -> CoverageReport:
    """Coverage of a gan_serve Generator on seeds seed0..seed0+n-1 (generated in chunks)."""
    images = np.concatenate([
        G.generate(range(start, min(start + chunk, seed0 + n)), progress=progress)  # type: ignore[attr-defined]
        for start in range(seed0, seed0 + n, chunk)])
    if images.shape[1:] != (SIZE, SIZE, 3):
        raise ValueError(f"the avatars metric needs {SIZE}x{SIZE} RGB images, got {images.shape[1:]}")
    return coverage_report(images)


def preview(indices: range = range(64)) -> bytes:
    """A PNG grid of renders (for READMEs and eyeballing)."""
    from gan_serve import images as gimg

    return gimg.encode_image(gimg.make_grid(np.stack([render(i) for i in indices])), "png")


class AvatarsDataset:
    """Torch dataset: item i is render(i) as float (C, R, R) in [-1, 1] (resized from 64 if
    `resolution` differs; grey when channels=1)."""

    def __init__(self, length: int = 50_000, resolution: int = SIZE, channels: int = 3) -> None:
        if resolution not in (32, 64, 128) or channels not in (1, 3):
            raise ValueError("builtin:avatars comes at resolution 32, 64 or 128, with 1 or 3 channels")
        self.length, self.resolution, self.channels = length, resolution, channels

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):  # noqa: ANN204 - a torch tensor
        import torch

        im = Image.fromarray(render(index))
        if self.resolution != SIZE:
            im = im.resize((self.resolution, self.resolution), Image.Resampling.BICUBIC)
        if self.channels == 1:
            im = im.convert("L")
        x = np.asarray(im, dtype=np.float32).reshape(self.resolution, self.resolution, -1)
        return torch.from_numpy(x.transpose(2, 0, 1) / 127.5 - 1.0)
