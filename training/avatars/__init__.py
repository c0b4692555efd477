"""`builtin:avatars`: procedural anime-style faces with known discrete modes, and a decoder.

Four backgrounds x five hair colours x three hair styles (short, twintails, long) x four eye
colours = 240 modes. Item i of the data set has mode i % 240 and its own position (+-2 px),
size (95/100/105%) and shade (+-8 on the background, hair and eye colours), all a
pure function of i:

    from training import avatars
    avatars.render(7)                   # (64, 64, 3) uint8, the same bytes every time
    avatars.attributes(7)               # Attributes(background='sky', hair='black', ...)
    avatars.decode(images)              # per image: attributes, high_quality, distance
    avatars.coverage_report(images)     # modes covered, share of high quality, KL to uniform
    avatars.evaluate_generator(G)       # the same for 10,000 seeds of a gan_serve Generator
    avatars.AvatarsDataset(50_000, 64)  # torch Dataset of float (3, 64, 64) in [-1, 1]

The decoder reads attributes back from pixels, so the coverage of a generator's samples can
be counted the way VEEGAN and PacGAN count stacked-MNIST modes (see `metric` for how to
read the figures). Rendering, decoding and the metric use numpy and Pillow only; torch is
imported by `AvatarsDataset` alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .decoder import MATCH, Decoded, DecodedArrays, decode, decode_arrays
from .metric import (
    CoverageReport,
    coverage_report,
    evaluate_generator,
    mode_counts,
    preview,
    report_from_counts,
)
from .renderer import (
    BACKGROUNDS,
    EYES,
    HAIR,
    N_MODES,
    RESOLUTIONS,
    SIZE,
    STYLES,
    Attributes,
    Nuisance,
    attributes,
    nuisance,
    render,
)

if TYPE_CHECKING:
    from .dataset import AvatarsDataset

__all__ = [
    "BACKGROUNDS", "EYES", "HAIR", "MATCH", "N_MODES", "RESOLUTIONS", "SIZE", "STYLES",
    "Attributes", "AvatarsDataset", "CoverageReport", "Decoded", "DecodedArrays", "Nuisance",
    "attributes", "coverage_report", "decode", "decode_arrays", "evaluate_generator",
    "mode_counts", "nuisance", "preview", "render", "report_from_counts",
]


def __getattr__(name: str) -> object:
    if name == "AvatarsDataset":  # imported on first use: it needs torch
        from .dataset import AvatarsDataset

        return AvatarsDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
