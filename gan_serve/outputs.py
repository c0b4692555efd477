"""Output files from generated images: the one place the CLI and HTTP turn images into bytes,
so the same request gives the same bytes from both."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import images as img
from .protocols import ImageGenerator

DEFAULT_DURATION_MS = 80  # animation frame duration


def seed_filename(seed: int, fmt: str) -> str:
    """`seed0042.png`: one image per seed, as --individual and zip layouts name them."""
    return f"seed{seed:04d}{img.EXTENSIONS[fmt]}"


def grid_bytes(G: ImageGenerator, seeds: Sequence[int], images: np.ndarray, truncation: float,
               nrow: int | None, fmt: str, **extra: object) -> bytes:
    """A make_grid image of `images` (the images of `seeds`) with provenance."""
    meta = G.provenance(seeds, truncation, **extra)
    return img.encode_image(img.make_grid(images, nrow), fmt, meta)


def single_bytes(G: ImageGenerator, seed: int, image: np.ndarray, truncation: float, fmt: str) -> bytes:
    """One seed's image as a file with its own provenance."""
    return img.encode_image(image, fmt, G.provenance([seed], truncation))


def interpolation_bytes(G: ImageGenerator, key_seeds: Sequence[int] | None, frames: np.ndarray,
                        truncation: float, method: str, steps: int, loop: bool, fmt: str,
                        animate: bool, nrow: int | None = None,
                        duration_ms: int = DEFAULT_DURATION_MS) -> bytes:
    """An interpolation as a strip (all frames in one row unless `nrow`) or an animation."""
    meta = G.provenance(key_seeds, truncation, method=method, steps=steps, loop=loop)
    if animate:
        return img.encode_animation(frames, fmt, duration_ms, meta)
    return img.encode_image(img.make_grid(frames, nrow or len(frames)), fmt, meta)
