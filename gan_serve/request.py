"""The request layer: what a caller asks for, resolved once for the CLI, HTTP and Python.

`SeedRequest` (images of seeds, optionally best-of-N) and `PathRequest` (an interpolation
through seeds or key latents) own the rules every surface shares: which seeds `seed`/`n`/
`seeds` name (defaults 0 and 16), the limits (one `Limits` value, gan_serve.limits; a server
may lower it) and the output budget checked before any image is generated (`check_output`),
the latents they run (recipe v1 from gan_serve.latents, then truncation), and the provenance
their files and HTTP headers carry. The CLI and the HTTP routes parse into these, call, and
format what comes back; nothing else re-derives a request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import images as img
from . import latents as lat
from . import outputs as out
from .directions import MAX_STRENGTH, Directions, LatentEdit
from .errors import InputError
from .latent_files import MAX_LATENT_VALUES, decode_latents, read_latents
from .limits import DEFAULT_LIMITS, Limits
from .protocols import ImageGenerator

if TYPE_CHECKING:
    from .video import VideoOptions

__all__ = ["DEFAULT_LIMITS", "MAX_LATENT_VALUES", "LatentsRequest", "Limits", "PathRequest",
           "SeedRequest", "WalkRequest", "check_json_depth", "decode_latents", "read_latents"]

# the defaults of every surface (the CLI's options, the HTTP fields, the Python API's keywords)
DEFAULT_SEED = 0  # first seed when neither seed nor seeds is given
DEFAULT_N = 16  # images when neither n nor seeds is given
DEFAULT_PSI = 1.0  # truncation psi: off
DEFAULT_STEPS = 16  # frames per interpolation segment
DEFAULT_METHOD = "slerp"  # interpolation: stays on the Gaussian shell
SEEDS_XOR = ("give either seeds or seed/n, not both (seeds lists every image; with candidates "
             "it lists the candidates and n says how many to keep)")
KEYS_XOR = "give exactly one of from/to, seeds or latents"
MAX_JSON_DEPTH = 16  # request bodies: ours nest 3 deep (an object holding a list of lists)
# one file per image (CLI --individual, HTTP zip/json) carries a seed's own provenance, which
# has no edit: an edit makes a grid, a strip or latents
EDIT_ALONE = "an edit cannot be combined with {what}; edit a grid or save the latents instead"


def _edited(z: np.ndarray, edit: LatentEdit | None) -> np.ndarray:
    return z if edit is None else edit.apply(z)


def _finite_latents(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 2 or z.dtype.kind != "f" or not np.isfinite(z).all():
        raise InputError(f"latents must be finite numbers shaped (K, z_dim), got {z.dtype} {z.shape}")
    return z.astype(np.float32)


def _check_edit(edit: LatentEdit | None, z_dim: int) -> None:
    if edit is not None and len(edit.offset) != z_dim:
        raise InputError(f"the edit is for z_dim {len(edit.offset)}; this model's z_dim is {z_dim}")


@dataclass(frozen=True)
class SeedRequest:
    """Images of `seeds` at `truncation_psi`; with `keep`, `seeds` are candidates of which a
    discriminator keeps the best `keep` (best-of-N)."""

    seeds: Sequence[int]  # a list, or a range for streamed output of any length
    truncation_psi: float = 1.0
    keep: int | None = None
    limits: Limits = field(default=DEFAULT_LIMITS, compare=False)
    edit: LatentEdit | None = None  # z' = psi * z + offset (gan_serve.directions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "truncation_psi", lat.check_psi(self.truncation_psi))
        if self.keep is not None:
            lat.check_n(self.keep, len(self.seeds), what=f"n (kept of {len(self.seeds)} candidates)")

    @classmethod
    def of(cls, seeds: Iterable[int] | SeedRequest, truncation_psi: float = 1.0,
           limits: Limits = DEFAULT_LIMITS, edit: LatentEdit | None = None) -> SeedRequest:
        """From the Python API's fields: any iterable of seeds (checked), or a request as is."""
        if isinstance(seeds, SeedRequest):
            return seeds
        return cls(lat.check_seeds(seeds, limits.max_n), truncation_psi, limits=limits, edit=edit)

    @classmethod
    def parse(cls, *, seed: int | None = None, n: int | None = None,
              seeds: str | Sequence[int] | None = None, truncation_psi: float = DEFAULT_PSI,
              candidates: int | None = None, limits: Limits | None = None,
              stream: bool = False, edit: LatentEdit | None = None) -> SeedRequest:
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
            pool = lat.seed_span(DEFAULT_SEED if seed is None else seed, count, limit)
            pool = pool if stream else list(pool)
        if candidates is None:
            return cls(pool, truncation_psi, limits=limits, edit=edit)
        if len(pool) < n:
            raise InputError(f"ranking keeps n ({n}) images of the candidates, but there are only "
                             f"{len(pool)}")
        return cls(pool, truncation_psi, keep=n, limits=limits, edit=edit)

    def __len__(self) -> int:
        """Images to generate (candidates included)."""
        return len(self.seeds)

    def check_output(self, G: ImageGenerator, fmt: str | None = None, nrow: int | None = None,
                     grid: bool = False) -> None:
        """Before generation: the images (candidates included) fit the output budget, and so
        does the grid of those shown (`grid`), which `fmt` can encode."""
        shown = len(self) if self.keep is None else self.keep
        _check_edit(self.edit, G.z_dim)
        img.check_nrow(nrow)
        self.limits.check_output(len(self), G.img_resolution, fmt,
                                 canvas=("grid", shown, nrow) if grid else None)

    def latents(self, z_dim: int) -> np.ndarray:
        """(N, z_dim) float32: recipe v1 latents of the seeds, truncated, then edited."""
        return _edited(lat.truncate(lat.latents_for_seeds(self.seeds, z_dim), self.truncation_psi),
                       self.edit)

    def provenance(self, G: ImageGenerator, chosen: Sequence[int] | None = None) -> dict[str, str]:
        """What the file and the HTTP headers say: `chosen` are the seeds shown (the kept ones
        when ranked, which also records the candidates as `ranked_from`), and the edit."""
        extra = {} if self.keep is None else {"ranked_from": lat.format_seeds(list(self.seeds))}
        extra.update(self.edit.provenance() if self.edit is not None else {})
        return out.provenance(G, list(self.seeds if chosen is None else chosen),
                              self.truncation_psi, **extra)


@dataclass(frozen=True)
class LatentsRequest:
    """Images of given latents (`generate --latents`: saved by `--latents-out` or `project`),
    truncated, then edited, like a seed's."""

    z: np.ndarray = field(compare=False)  # (N, z_dim)
    truncation_psi: float = 1.0
    limits: Limits = field(default=DEFAULT_LIMITS, compare=False)
    edit: LatentEdit | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "z", _finite_latents(self.z))
        lat.check_n(len(self.z), self.limits.max_n, what="the number of latents")
        object.__setattr__(self, "truncation_psi", lat.check_psi(self.truncation_psi))

    def __len__(self) -> int:
        return len(self.z)

    def check_output(self, G: ImageGenerator, fmt: str | None = None, nrow: int | None = None) -> None:
        """Before generation: latents of G's z_dim; their grid within the output budget."""
        if self.z.shape[1] != G.z_dim:
            raise InputError(f"latents must have shape (N, {G.z_dim}) for this model, got {self.z.shape}")
        _check_edit(self.edit, G.z_dim)
        img.check_nrow(nrow)
        self.limits.check_output(len(self), G.img_resolution, fmt, canvas=("grid", len(self), nrow))

    def latents(self, z_dim: int) -> np.ndarray:
        return _edited(lat.truncate(self.z, self.truncation_psi), self.edit)

    def provenance(self, G: ImageGenerator) -> dict[str, str]:
        """No seeds: the latents themselves, by shape and the sha256 of their float32 bytes."""
        digest = hashlib.sha256(np.ascontiguousarray(self.z).tobytes()).hexdigest()[:16]
        extra = {"latents": f"{len(self)}x{self.z.shape[1]}@sha256:{digest}"}
        extra.update(self.edit.provenance() if self.edit is not None else {})
        return out.provenance(G, None, self.truncation_psi, **extra)


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
    edit: LatentEdit | None = None  # every frame moves by its offset

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
            object.__setattr__(self, "key_latents", _finite_latents(self.key_latents))
        n_keys = self.n_keys
        if n_keys < 2:
            raise InputError("interpolation needs at least two seeds or latents")
        lat.check_n(n_keys, self.limits.max_keys, what="the number of keys")
        lat.check_frames(n_keys, self.steps, self.loop, self.limits.max_n)

    @classmethod
    def parse(cls, *, from_seed: int | None = None, to_seed: int | None = None,
              seeds: str | Sequence[int] | None = None, latents: np.ndarray | None = None,
              steps: int = DEFAULT_STEPS, method: str = DEFAULT_METHOD, loop: bool = False,
              truncation_psi: float = DEFAULT_PSI, limits: Limits | None = None,
              edit: LatentEdit | None = None) -> PathRequest:
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
                   truncation_psi, limits or DEFAULT_LIMITS, edit)

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
        _check_edit(self.edit, z_dim)

    def check_output(self, G: ImageGenerator, fmt: str | None = None, animate: bool = False,
                     nrow: int | None = None, duration_ms: int | None = None,
                     video: VideoOptions | None = None) -> None:
        """Before generation: latents that fit G; frames within the output budget; a strip (all
        frames in one row unless `nrow`), animation or `video` (every frame it writes, scaled and
        repeated, counts too) that `fmt` can encode."""
        self.check_model(G.z_dim)
        _check_frames(self.limits, len(self), G.img_resolution, fmt, animate, nrow, duration_ms, video)

    def latents(self, z_dim: int) -> np.ndarray:
        """(T, z_dim) float32: the path's latents, truncated."""
        self.check_model(z_dim)
        keys = (lat.latents_for_seeds(self.keys, z_dim) if self.keys is not None
                else self.key_latents)
        path = lat.interpolation_path(keys, self.steps, self.method, self.loop,
                                      max_steps=self.limits.max_steps, max_frames=self.limits.max_n)
        return _edited(lat.truncate(path, self.truncation_psi), self.edit)

    def provenance(self, G: ImageGenerator) -> dict[str, str]:
        edit = self.edit.provenance() if self.edit is not None else {}
        return out.provenance(G, None if self.keys is None else list(self.keys),
                              self.truncation_psi, method=self.method, steps=self.steps,
                              loop=self.loop, **edit)


@dataclass(frozen=True)
class WalkRequest:
    """Frames along one direction from a seed: z + t * d, t evenly spaced over `span` (both
    ends included), z the seed's truncated latent (then moved by `edit`, if any)."""

    seed: int
    direction: str  # its name in `directions`
    directions: Directions = field(compare=False)
    steps: int = 9
    span: tuple[float, float] = (-3.0, 3.0)
    truncation_psi: float = 1.0
    limits: Limits = field(default=DEFAULT_LIMITS, compare=False)
    edit: LatentEdit | None = None

    def __post_init__(self) -> None:
        lat.check_seed(self.seed)
        self.directions.vector(self.direction)  # an unknown name: one line, before any work
        lat.check_steps(self.steps, self.limits.max_steps)
        lat.check_n(self.steps, self.limits.max_n, what="steps")
        object.__setattr__(self, "span", check_span(self.span))
        object.__setattr__(self, "truncation_psi", lat.check_psi(self.truncation_psi))
        if self.edit is not None and self.edit.source != self.directions.id:
            raise InputError("a walk's edit must use the walk's own directions")

    def __len__(self) -> int:
        return self.steps

    def check_output(self, G: ImageGenerator, fmt: str | None = None, animate: bool = False,
                     nrow: int | None = None, duration_ms: int | None = None,
                     video: VideoOptions | None = None) -> None:
        """Before generation: directions that fit G; the strip, animation or video within the budget."""
        self.directions.check_model(G.z_dim)
        _check_edit(self.edit, G.z_dim)
        _check_frames(self.limits, len(self), G.img_resolution, fmt, animate, nrow, duration_ms, video)

    def latents(self, z_dim: int) -> np.ndarray:
        """(steps, z_dim) float32."""
        self.directions.check_model(z_dim)
        z = _edited(lat.truncate(lat.latents_for_seeds([self.seed], z_dim), self.truncation_psi),
                    self.edit)
        t = np.linspace(*self.span, self.steps)[:, None]
        return (z + t * self.directions.vector(self.direction).astype(np.float64)).astype(np.float32)

    def provenance(self, G: ImageGenerator) -> dict[str, str]:
        low, high = self.span
        extra = {"directions": self.directions.id, "walk": f"{self.direction}={low!r}..{high!r}",
                 "steps": self.steps}
        if self.edit is not None:
            extra["edit"] = self.edit.text  # made with the same directions (the surfaces' rule)
        return out.provenance(G, [self.seed], self.truncation_psi, **extra)


def _check_frames(limits: Limits, n: int, size: int, fmt: str | None, animate: bool,
                  nrow: int | None, duration_ms: int | None, video: VideoOptions | None) -> None:
    """`n` frames of `size`: within the output budget as a strip (all frames in one row unless
    `nrow`), an animation or a `video` (every frame it writes, scaled and repeated, counts) that
    `fmt` can encode."""
    if video is not None:
        limits.check_output(n, size)
        video.check_output(n, size, size, fmt or "mp4", limits.max_pixels)
        return
    img.check_nrow(nrow)
    if animate and duration_ms is not None:
        img.check_duration(duration_ms)
    strip = None if animate or fmt is None else ("strip", n, nrow or n)
    limits.check_output(n, size, fmt, canvas=strip)


def check_span(span: str | Sequence[float]) -> tuple[float, float]:
    """A walk's range: "-3,3" or (low, high), finite, within +-MAX_STRENGTH, low != high."""
    if isinstance(span, str):
        parts = span.split(",")
        try:
            span = tuple(float(p) for p in parts)
        except ValueError:
            span = ()
    values = tuple(span) if isinstance(span, Sequence) else ()
    if (len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int | float) for v in values)
            or not all(abs(v) <= MAX_STRENGTH for v in values) or values[0] == values[1]):
        raise InputError(f"a walk's range is LOW,HIGH: two different numbers within "
                         f"+-{MAX_STRENGTH:g}, e.g. -3,3")
    return float(values[0]), float(values[1])


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
