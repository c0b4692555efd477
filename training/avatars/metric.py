"""Mode coverage of a sampler on builtin:avatars, the way VEEGAN/PacGAN count stacked-MNIST modes.

How to read a CoverageReport (n samples, 240 modes):

- modes_covered: modes that received at least one high-quality sample. A perfect sampler
  covers all 240 from n = 2,000 on (at n = 1,000 it misses about 4 by chance, and its KL
  below is about 0.12). A collapsed generator covers few; so does one whose samples are
  varied but poor, because only high-quality samples count.
- high_quality: the share of samples the decoder reads as a faithful rendering (see
  decoder.MATCH): face, hair silhouette and colours, background and eyes in place. Smudges,
  blends of two modes, black or noisy images are not high quality.
- kl_to_uniform: KL(p || uniform) in nats, p the mode histogram of the high-quality samples.
  0 is perfectly even; sampling noise alone gives about 239 / (2 * high-quality samples),
  0.012 at 10,000. Using m of the modes evenly gives ln(240 / m): half of them 0.69, 3 of them
  4.38. The bundled generator aims at >= 95% covered, >= 90% high quality and KL <= 0.1 on
  10,000 samples.
- largest_mode_share: the share of high-quality samples in the most common mode (1/240 =
  0.4% when even); a large value names the collapse the KL measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan_serve import images as gimg
from gan_serve import latents as lat
from gan_serve.errors import InputError
from gan_serve.limits import DEFAULT_LIMITS
from gan_serve.protocols import ImageGenerator

from .decoder import decode_arrays
from .renderer import N_MODES, SIZE, render

EVAL_CHUNK = 1000  # seeds generated and decoded at a time (bounds memory)
PREVIEW_INDICES = tuple(range(0, 61 * 64, 61))  # 61 is prime to 240: 64 different modes


@dataclass(frozen=True)
class CoverageReport:
    """Mode coverage of n samples; see the module docstring for how to read it."""

    samples: int
    high_quality_samples: int
    modes_covered: int  # modes with at least one high-quality sample
    modes_total: int
    kl_to_uniform: float  # nats; inf when no sample is high quality
    largest_mode_share: float  # of the high-quality samples; 0.0 when there are none

    @property
    def coverage(self) -> float:
        """Share of the modes covered."""
        return self.modes_covered / self.modes_total

    @property
    def high_quality(self) -> float:
        """Share of the samples that are high quality."""
        return self.high_quality_samples / self.samples if self.samples else 0.0

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready figures (an infinite KL becomes None)."""
        kl = self.kl_to_uniform if math.isfinite(self.kl_to_uniform) else None
        return {"samples": self.samples, "high_quality_samples": self.high_quality_samples,
                "high_quality": self.high_quality, "modes_covered": self.modes_covered,
                "modes_total": self.modes_total, "coverage": self.coverage, "kl_to_uniform": kl,
                "largest_mode_share": self.largest_mode_share}

    def render(self) -> str:
        """One line for logs, e.g. '240/240 modes covered (100.0%), 99.9% high quality, ...'."""
        return (f"{self.modes_covered}/{self.modes_total} modes covered ({self.coverage:.1%}), "
                f"{self.high_quality:.1%} high quality, KL to uniform {self.kl_to_uniform:.3f}, "
                f"largest mode {self.largest_mode_share:.1%} (on {self.samples} samples)")


def report_from_counts(counts: np.ndarray, samples: int) -> CoverageReport:
    """A report from the per-mode counts (N_MODES,) of high-quality samples among `samples`."""
    counts = np.asarray(counts, dtype=np.int64)
    good = int(counts.sum())
    if good:
        p = counts[counts > 0] / good
        kl, largest = float(np.sum(p * np.log(p * len(counts)))), float(p.max())
    else:
        kl, largest = math.inf, 0.0
    return CoverageReport(int(samples), good, int((counts > 0).sum()), len(counts), max(kl, 0.0),
                          largest)


def mode_counts(images: np.ndarray) -> np.ndarray:
    """(N_MODES,) counts of the high-quality images among uint8 (N, 64, 64, 3) `images`."""
    decoded = decode_arrays(images)
    return np.bincount(decoded.modes[decoded.high_quality], minlength=N_MODES)


def coverage_report(images: np.ndarray) -> CoverageReport:
    """Decode uint8 (N, 64, 64, 3) samples and summarise how they cover the modes."""
    images = np.asarray(images)
    return report_from_counts(mode_counts(images), len(images) if images.ndim == 4 else 1)


def evaluate_generator(G: ImageGenerator, n: int = 10_000, seed0: int = 0,
                       progress: Callable[[int], None] | None = None, *,
                       chunk: int = EVAL_CHUNK) -> CoverageReport:
    """Coverage of a gan_serve Generator on seeds seed0 .. seed0+n-1, generated and decoded
    `chunk` at a time; `progress` is passed on to G.generate (called per finished image batch)."""
    res, channels = getattr(G, "img_resolution", SIZE), getattr(G, "channels", 3)
    if (res, channels) != (SIZE, 3):
        raise InputError(f"the avatars metric needs a {SIZE}x{SIZE} RGB generator, this one makes "
                         f"{res}x{res} with {channels} channel(s)")
    lat.check_n(n, limit=lat.MAX_SEED + 1)
    lat.check_n(chunk, limit=DEFAULT_LIMITS.max_n, what="chunk")
    if seed0 < 0 or seed0 + n - 1 > lat.MAX_SEED:
        raise InputError(f"seeds {seed0}..{seed0 + n - 1} leave [0, {lat.MAX_SEED}]")
    counts = np.zeros(N_MODES, np.int64)
    for start in range(seed0, seed0 + n, chunk):
        seeds = range(start, min(start + chunk, seed0 + n))
        counts += mode_counts(G.generate(seeds, progress=progress))
    return report_from_counts(counts, n)


def preview(path: str | Path | None = None, indices: Sequence[int] = PREVIEW_INDICES,
            nrow: int | None = None, resolution: int = SIZE) -> bytes:
    """A PNG grid of renders (64 different modes by default); written to `path` if given."""
    grid = gimg.make_grid(np.stack([render(i, resolution) for i in indices]), nrow)
    data = gimg.encode_image(grid, "png", {"Software": "gan-serve", "gan_serve.data": "builtin:avatars",
                                           "gan_serve.indices": lat.format_seeds(list(indices))})
    if path is not None:
        Path(path).write_bytes(data)
    return data
