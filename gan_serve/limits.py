"""How much one request may ask for: the one `Limits`, for the CLI, HTTP and Python alike.

Each limit is declared here once, as a field default, with the least a server may lower it
to (`LOWEST`). gan_serve.request checks every request against a `Limits` value (the default,
or a server's); `gan-serve serve` builds its lowered one from ServeSettings (`--max-n`,
GAN_SERVE_MAX_STEPS, ...), which may lower a limit and never raise it. gan_serve.latents
takes each limit as an argument and holds none of its own (it is copied into Triton models).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from . import images as img
from .errors import InputError

# The least each limit may be lowered to: one image, and two frames or keys to a path.
LOWEST = {"max_n": 1, "max_steps": 2, "max_keys": 2, "max_files": 1, "max_pixels": 1}


@dataclass(frozen=True)
class Limits:
    """How much one request may ask for: one default for the CLI, HTTP and Python; a server may
    lower it (`gan-serve serve --max-n`, GAN_SERVE_MAX_STEPS, ...), never raise it."""

    max_n: int = 4096  # images, candidates or interpolation frames held in memory at once
    max_steps: int = 1024  # frames per interpolation segment
    max_keys: int = 4096  # seeds or latents an interpolation passes through
    max_files: int = 2**32  # seeds streamed to files one chunk at a time (CLI --individual):
    # every seed of recipe v1
    # Output pixels (32 Mpx, ~100 MB as RGB) of the images (candidates, frames), and again of
    # their grid or strip: 4,096 images of 64x64 (16.8 M) and their grid (17.9 M) fit, so do 512
    # of 256x256 or 2 of 4096x4096 (the largest a model may declare); 4,096 of 2048x2048 (17 G
    # pixels, 51 GB) do not. Checked before generation.
    max_pixels: int = 2**25

    def __post_init__(self) -> None:
        for name, (low, high) in bounds().items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InputError(f"{name} must be an integer from {low} to {high}, got {value!r}")

    def images_within(self, size: int) -> int:
        """How many size x size images the output budget holds at once (0: not one)."""
        return min(self.max_n, self.max_pixels // (size * size))

    def check_pixels(self, pixels: int, what: str) -> None:
        """Refuse `what` (an output of `pixels` pixels) over the output budget."""
        if pixels > self.max_pixels:
            raise InputError(f"{what} would be {pixels:,} pixels; the output budget is "
                             f"{self.max_pixels:,} pixels per request (ask for fewer images)")

    def check_output(self, n: int, size: int, fmt: str | None = None, *,
                     canvas: tuple[str, int, int | None] | None = None) -> None:
        """Before generation: `n` images of size x size fit the budget and `fmt`; so does the
        `canvas` ("grid" or "strip", the images on it, nrow) made of them, if any."""
        self.check_pixels(n * size * size, f"{n:,} images of {size}x{size}")
        if fmt is not None:
            img.check_size(size, size, fmt, "each image")
        if canvas is not None:
            name, shown, nrow = canvas
            height, width = img.grid_shape(shown, size, size, nrow)
            self.check_pixels(height * width, f"a {width:,}x{height:,} {name}")
            if fmt is not None:
                img.check_size(height, width, fmt, f"the {name}")


def bounds() -> dict[str, tuple[int, int]]:
    """Each limit's name -> (the least a server may lower it to, its default: the most)."""
    return {f.name: (LOWEST[f.name], f.default) for f in fields(Limits)}


DEFAULT_LIMITS = Limits()
