"""The request layer: what a caller asks for, resolved once for the CLI, HTTP and Python.

`SeedRequest` (images of seeds, optionally best-of-N) and `PathRequest` (an interpolation
through seeds or key latents) own the rules every surface shares: which seeds `seed`/`n`/
`seeds` name (defaults 0 and 16), the limits (one `Limits` value; a server may lower it), the
output budget checked before any image is generated (`check_output`), the latents they run
(recipe v1 from gan_serve.latents, then truncation), and the provenance their files and HTTP
headers carry. The CLI and the HTTP routes parse into these, call, and format what comes back;
nothing else re-derives a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import images as img
from . import latents as lat
from .errors import InputError
from .latent_files import MAX_LATENT_VALUES, decode_latents, read_latents
from .protocols import ImageGenerator

if TYPE_CHECKING:
    from .video import VideoOptions

__all__ = ["DEFAULT_LIMITS", "MAX_LATENT_VALUES", "MAX_PIXELS", "Limits", "PathRequest",
           "SeedRequest", "check_json_depth", "decode_latents", "read_latents"]

DEFAULT_N = 16  # images when neither n nor seeds is given
DEFAULT_STEPS = 16  # frames per interpolation segment
SEEDS_XOR = ("give either seeds or seed/n, not both (seeds lists every image; with candidates "
             "it lists the candidates and n says how many to keep)")
KEYS_XOR = "give exactly one of from/to, seeds or latents"
# Output pixels one request or command may make (32 Mpx, ~100 MB as RGB): 4,096 images of 64x64
# (16.8 M) and their grid (17.9 M) fit, so do 512 of 256x256 or 2 of 4096x4096 (the largest a
# model may declare); 4,096 of 2048x2048 (17 G pixels, 51 GB) do not. Checked before generation.
MAX_PIXELS = 2**25
MAX_JSON_DEPTH = 16  # request bodies: ours nest 3 deep (an object holding a list of lists)


@dataclass(frozen=True)
class Limits:
    """How much one request may ask for: one default for the CLI, HTTP and Python; a server may
    lower it (`gan-serve serve --max-n`, GAN_SERVE_MAX_STEPS, ...), never raise it."""

    max_n: int = lat.MAX_N  # images, candidates or interpolation frames held in memory at once
    max_steps: int = lat.MAX_STEPS  # frames per interpolation segment
    max_keys: int = lat.MAX_N  # seeds or latents an interpolation passes through
    max_files: int = lat.MAX_FILES  # seeds streamed to files one chunk at a time (CLI --individual)
    max_pixels: int = MAX_PIXELS  # output pixels: images (candidates, frames), grid or strip, each

    def __post_init__(self) -> None:
        top = Limits.__dataclass_fields__
        for name, low in (("max_n", 1), ("max_steps", 2), ("max_keys", 2), ("max_files", 1),
                          ("max_pixels", 1)):
            value, default = getattr(self, name), top[name].default
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= default:
                raise InputError(f"{name} must be an integer from {low} to {default}, got {value!r}")

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


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class SeedRequest:
    """Images of `seeds` at `truncation_psi`; with `keep`, `seeds` are candidates of which a
    discriminator keeps the best `keep` (best-of-N)."""

    seeds: Sequence[int]  # a list, or a range for streamed output of any length
    truncation_psi: float = 1.0
    keep: int | None = None
    limits: Limits = field(default=DEFAULT_LIMITS, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "truncation_psi", lat.check_psi(self.truncation_psi))
        if self.keep is not None:
            lat.check_n(self.keep, len(self.seeds), what=f"n (kept of {len(self.seeds)} candidates)")

    @classmethod
    def of(cls, seeds: Iterable[int] | SeedRequest, truncation_psi: float = 1.0,
           limits: Limits = DEFAULT_LIMITS) -> SeedRequest:
        """From the Python API's fields: any iterable of seeds (checked), or a request as is."""
        if isinstance(seeds, SeedRequest):
            return seeds
        return cls(lat.check_seeds(seeds, limits.max_n), truncation_psi, limits=limits)

    @classmethod
    def parse(cls, *, seed: int | None = None, n: int | None = None,
              seeds: str | Sequence[int] | None = None, truncation_psi: float = 1.0,
              candidates: int | None = None, limits: Limits | None = None,
              stream: bool = False) -> SeedRequest:
        """The surfaces' fields: `seeds` ("0-35,100" or a list) xor `seed`/`n` (defaults 0 and
        16, seeds seed..seed+n-1). With `candidates`, `n` images are kept of `candidates` seeds
        from `seed` (or of `seeds`). `stream`: files written chunk by chunk (limit max_files)."""
        if seeds is not None and (seed is not None or (n is not None and candidates is None)):
            raise InputError(SEEDS_XOR)
        limits = limits or DEFAULT_LIMITS
        limit = limits.max_files if stream else limits.max_n
        n = lat.check_n(DEFAULT_N if n is None else n, limit)
        count = n if candidates is None else lat.check_n(candidates, limits.max_n, what="candidates")
        if isinstance(seeds, str):
            pool: Sequence[int] = lat.parse_seeds(seeds, limit)
        elif seeds is not None:
            pool = lat.check_seeds(seeds, limit)
        else:
            pool = lat.seed_span(0 if seed is None else seed, count, limit)
            pool = pool if stream else list(pool)
        if candidates is None:
            return cls(pool, truncation_psi, limits=limits)
        if len(pool) < n:
            raise InputError(f"ranking keeps n ({n}) images of the candidates, but there are only "
                             f"{len(pool)}")
        return cls(pool, truncation_psi, keep=n, limits=limits)

    def __len__(self) -> int:
        """Images to generate (candidates included)."""
        return len(self.seeds)

    def check_output(self, G: ImageGenerator, fmt: str | None = None, nrow: int | None = None,
                     grid: bool = False) -> None:
        """Before generation: the images (candidates included) fit the output budget, and so
        does the grid of those shown (`grid`), which `fmt` can encode."""
        shown = len(self) if self.keep is None else self.keep
        img.check_nrow(nrow)
        self.limits.check_output(len(self), G.img_resolution, fmt,
                                 canvas=("grid", shown, nrow) if grid else None)

    def latents(self, z_dim: int) -> np.ndarray:
        """(N, z_dim) float32: recipe v1 latents of the seeds, truncated."""
        return lat.truncate(lat.latents_for_seeds(self.seeds, z_dim), self.truncation_psi)

    def provenance(self, G: ImageGenerator, chosen: Sequence[int] | None = None) -> dict[str, str]:
        """What the file and the HTTP headers say: `chosen` are the seeds shown (the kept ones
        when ranked, which also records the candidates as `ranked_from`)."""
        extra = {} if self.keep is None else {"ranked_from": lat.format_seeds(list(self.seeds))}
        return G.provenance(list(self.seeds if chosen is None else chosen), self.truncation_psi,
                            **extra)


@dataclass(frozen=True)
class PathRequest:
    """Frames along a slerp/lerp path through key seeds or key latents (K, z_dim)."""

    keys: tuple[int, ...] | None = None
    key_latents: np.ndarray | None = field(default=None, compare=False)
    steps: int = DEFAULT_STEPS
    method: str = "slerp"
    loop: bool = False
    truncation_psi: float = 1.0
    limits: Limits = field(default=DEFAULT_LIMITS, compare=False)

    def __post_init__(self) -> None:
        if (self.keys is None) == (self.key_latents is None):
            raise InputError(KEYS_XOR)
        lat.check_steps(self.steps, self.limits.max_steps)
        if self.method not in lat.METHODS:
            raise InputError(f"unknown interpolation method {self.method!r}; choose one of "
                             f"{', '.join(lat.METHODS)}")
        if not isinstance(self.loop, bool):
            raise InputError(f"loop must be true or false, got {self.loop!r}")
        object.__setattr__(self, "truncation_psi", lat.check_psi(self.truncation_psi))
        if self.key_latents is not None:
            z = np.asarray(self.key_latents)
            if z.ndim != 2 or z.dtype.kind != "f" or not np.isfinite(z).all():
                raise InputError(f"latents must be finite numbers shaped (K, z_dim), got "
                                 f"{z.dtype} {z.shape}")
            object.__setattr__(self, "key_latents", z.astype(np.float32))
        n_keys = self.n_keys
        if n_keys < 2:
            raise InputError("interpolation needs at least two seeds or latents")
        lat.check_n(n_keys, self.limits.max_keys, what="the number of keys")
        lat.check_frames(n_keys, self.steps, self.loop, self.limits.max_n)

    @classmethod
    def parse(cls, *, from_seed: int | None = None, to_seed: int | None = None,
              seeds: str | Sequence[int] | None = None, latents: np.ndarray | None = None,
              steps: int = DEFAULT_STEPS, method: str = "slerp", loop: bool = False,
              truncation_psi: float = 1.0, limits: Limits | None = None) -> PathRequest:
        """The surfaces' fields: exactly one of `from`/`to`, `seeds` or `latents`."""
        ends = from_seed is not None or to_seed is not None
        if sum((ends, seeds is not None, latents is not None)) != 1:
            raise InputError(KEYS_XOR)
        keys: list[int] | None = None
        if ends:
            if from_seed is None or to_seed is None:
                raise InputError("from and to go together")
            keys = [lat.check_seed(from_seed), lat.check_seed(to_seed)]
        elif isinstance(seeds, str):
            keys = lat.parse_seeds(seeds, (limits or DEFAULT_LIMITS).max_keys)
        elif seeds is not None:
            keys = lat.check_seeds(seeds, (limits or DEFAULT_LIMITS).max_keys)
        return cls(None if keys is None else tuple(keys), latents, steps, method, loop,
                   truncation_psi, limits or DEFAULT_LIMITS)

    @property
    def n_keys(self) -> int:
        return len(self.keys) if self.keys is not None else len(self.key_latents)  # one is set

    def __len__(self) -> int:
        """Frames the path has."""
        return lat.path_frames(self.n_keys, self.steps, self.loop)

    def check_model(self, z_dim: int) -> None:
        """Refuse key latents of another size than the model's, before any work is queued."""
        if self.key_latents is not None and self.key_latents.shape[1] != z_dim:
            raise InputError(f"latents must have shape (K, {z_dim}) for this model, got "
                             f"{self.key_latents.shape}")

    def check_output(self, G: ImageGenerator, fmt: str | None = None, animate: bool = False,
                     nrow: int | None = None, duration_ms: int | None = None,
                     video: VideoOptions | None = None) -> None:
        """Before generation: latents that fit G; frames within the output budget; a strip (all
        frames in one row unless `nrow`), animation or `video` (every frame it writes, scaled and
        repeated, counts too) that `fmt` can encode."""
        self.check_model(G.z_dim)
        if video is not None:
            self.limits.check_output(len(self), G.img_resolution)
            size = G.img_resolution
            video.check_output(len(self), size, size, fmt or "mp4", self.limits.max_pixels)
            return
        img.check_nrow(nrow)
        if animate and duration_ms is not None:
            img.check_duration(duration_ms)
        strip = None if animate or fmt is None else ("strip", len(self), nrow or len(self))
        self.limits.check_output(len(self), G.img_resolution, fmt, canvas=strip)

    def latents(self, z_dim: int) -> np.ndarray:
        """(T, z_dim) float32: the path's latents, truncated."""
        self.check_model(z_dim)
        keys = (lat.latents_for_seeds(self.keys, z_dim) if self.keys is not None
                else self.key_latents)
        path = lat.interpolation_path(keys, self.steps, self.method, self.loop)
        return lat.truncate(path, self.truncation_psi)

    def provenance(self, G: ImageGenerator) -> dict[str, str]:
        return G.provenance(None if self.keys is None else list(self.keys), self.truncation_psi,
                            method=self.method, steps=self.steps, loop=self.loop)


def check_json_depth(value: object, limit: int = MAX_JSON_DEPTH) -> object:
    """`value` (parsed JSON) if no list or object in it lies deeper than `limit`, else
    InputError. Iterative: a hostile depth costs no stack."""
    containers = (list, dict)
    stack = [(value, 1)] if isinstance(value, containers) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise InputError(f"JSON nested deeper than {limit} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((v, depth + 1) for v in children if isinstance(v, containers))
    return value
