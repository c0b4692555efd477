"""Seeds to latents (recipe v1), seed lists, truncation and interpolation.

The one owner of the latent contract in ARCHITECTURE.md: numpy only, on the CPU, so every
backend and device sees the same z. Nothing here imports torch, and nothing here but
gan_serve.errors (Triton models run a copy of this file): how many seeds, steps or frames a
request may have is gan_serve.limits' rule, passed in as `limit`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence

import numpy as np

from .errors import InputError

RECIPE_VERSION = 1
MAX_SEED = 2**32 - 1
PSI_RANGE = (0.0, 2.0)
METHODS = ("slerp", "lerp")


def check_seed(seed: int) -> int:
    """Return `seed` as an int if it lies in [0, 2**32-1], else raise InputError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed {seed!r} is not an integer; seeds are integers in [0, {MAX_SEED}]")
    if not 0 <= int(seed) <= MAX_SEED:
        raise InputError(f"seed {seed} is outside [0, {MAX_SEED}]")
    return int(seed)


def check_n(n: int, limit: int, what: str = "n") -> int:
    """Validate an image count: 1 <= n <= limit."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= limit:
        raise InputError(f"{what} must be an integer from 1 to {limit}, got {n!r}")
    return int(n)


def seed_range(seed: int, n: int, limit: int) -> list[int]:
    """`--seed S --n N`: the seeds S, S+1, ..., S+N-1."""
    return list(seed_span(seed, n, limit))


def seed_span(seed: int, n: int, limit: int) -> range:
    """`seed_range` as a range object: constant memory for file output of any size."""
    check_seed(seed)
    check_n(n, limit)
    if seed + n - 1 > MAX_SEED:
        raise InputError(f"seeds {seed}..{seed + n - 1} run past the largest seed {MAX_SEED}")
    return range(seed, seed + n)


_RANGE_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_seeds(text: str, limit: int) -> list[int]:
    """Parse a StyleGAN-style seed list such as ``"0-35,100"`` (ranges inclusive, order kept)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("empty seed list; write seeds like '42', '0-35' or '0-35,100'")
    seeds: list[int] = []
    for item in text.split(","):
        m = _RANGE_ITEM.match(item.strip())
        if not m:
            raise InputError(
                f"malformed seed list item {item.strip()!r} in {text!r}; "
                "write seeds like '42', '0-35' or '0-35,100'"
            )
        lo = check_seed(int(m.group(1)))
        hi = check_seed(int(m.group(2))) if m.group(2) else lo
        if hi < lo:
            raise InputError(f"seed range {item.strip()!r} runs backwards; write it as {hi}-{lo}")
        if len(seeds) + hi - lo + 1 > limit:
            raise InputError(f"seed list {text!r} names more than {limit} seeds")
        seeds.extend(range(lo, hi + 1))
    return seeds


def check_seeds(seeds: Iterable[int], limit: int) -> list[int]:
    """Validate a sequence of seeds given from Python: each in range, at least one, at most limit."""
    out = [check_seed(s) for s in seeds]
    if not out:
        raise InputError("no seeds given; pass at least one seed")
    check_n(len(out), limit, what="the number of seeds")
    return out


_local = threading.local()  # one RandomState per thread: building one costs ~24x a reseed


def _reseeded(seed: int) -> np.random.RandomState:
    rs = getattr(_local, "rs", None)
    if rs is None:
        rs = _local.rs = np.random.RandomState()
    rs.seed(seed)  # also drops the cached second Gaussian: same stream as RandomState(seed)
    return rs


def seed_to_latent(seed: int, z_dim: int) -> np.ndarray:
    """Latent of one seed, recipe v1: ``RandomState(seed).randn(z_dim)`` as float32."""
    return _reseeded(check_seed(seed)).randn(z_dim).astype(np.float32)


def latents_for_seeds(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """Stack the latents of `seeds` into a (N, z_dim) float32 array."""
    out = np.empty((len(seeds), z_dim), np.float32)
    for i, s in enumerate(seeds):
        out[i] = _reseeded(check_seed(s)).randn(z_dim)
    return out


def check_psi(psi: float) -> float:
    """Validate a truncation psi in [0, 2] (1 means off)."""
    lo, hi = PSI_RANGE
    try:
        value = float(psi)
    except (TypeError, ValueError):
        raise InputError(f"truncation psi must be a number in [{lo}, {hi}], got {psi!r}") from None
    if not lo <= value <= hi:  # also rejects NaN
        raise InputError(f"truncation psi must be in [{lo}, {hi}] (1 = off), got {psi}")
    return value


def truncate(z: np.ndarray, psi: float) -> np.ndarray:
    """z' = psi * z (the mean of N(0, I) is 0, so this pulls towards the average image)."""
    psi = check_psi(psi)
    return z if psi == 1.0 else (z * np.float32(psi)).astype(np.float32)


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Linear interpolation; `t` has shape (T,), the result (T, z_dim)."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    return ((1.0 - t) * a[None].astype(np.float64) + t * b[None].astype(np.float64)).astype(
        np.float32
    )


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation (falls back to lerp for nearly parallel vectors)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0 or nb == 0:
        return lerp(a, b, t)
    cos = np.clip(np.dot(a64 / na, b64 / nb), -1.0, 1.0)
    omega = np.arccos(cos)
    if np.sin(omega) < 1e-6:
        return lerp(a, b, t)
    t = np.asarray(t, dtype=np.float64)[:, None]
    out = (np.sin((1.0 - t) * omega) * a64 + np.sin(t * omega) * b64) / np.sin(omega)
    out[t[:, 0] == 0.0] = a64  # endpoints exact: they must equal the seeds' own latents
    out[t[:, 0] == 1.0] = b64
    return out.astype(np.float32)


def check_steps(steps: int, limit: int) -> int:
    """Frames per interpolation segment, endpoints included: 2 <= steps <= limit."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise InputError(f"steps must be an integer from 2 to {limit}, got {steps!r}")
    if not 2 <= steps <= limit:
        raise InputError(f"steps must be from 2 to {limit} (endpoints included), got {steps}")
    return int(steps)


def path_frames(keys: int, steps: int, loop: bool = False) -> int:
    """How many frames `interpolation_path` gives for `keys` keys (before computing any)."""
    return keys * (steps - 1) + (0 if loop else 1 - (steps - 1))


def check_frames(keys: int, steps: int, loop: bool, limit: int) -> int:
    """The frame count of an interpolation (`steps` checked already), refused above `limit`
    before any frame exists: the one cap the CLI, HTTP (with its --max-n) and Python share."""
    frames = path_frames(keys, steps, loop)
    if frames > limit:
        raise InputError(f"{keys} keys with {steps} steps{' and --loop' if loop else ''} make "
                         f"{frames:,} frames; the limit is {limit:,} per interpolation (fewer "
                         "seeds or --steps)")
    return frames


def interpolation_path(keys: np.ndarray, steps: int, method: str = "slerp", loop: bool = False,
                       *, max_steps: int, max_frames: int) -> np.ndarray:
    """Latents along a path through `keys` (K, z_dim), `steps` frames per segment.

    Shared endpoints appear once, so K keys give (K-1)*(steps-1)+1 frames, or
    K*(steps-1) when `loop` returns to the first key. Frame 0 is exactly keys[0].
    At most `max_steps` per segment and `max_frames` in all (a request's `Limits`).
    """
    steps = check_steps(steps, max_steps)
    check_frames(len(keys), steps, loop, max_frames)
    if method not in METHODS:
        raise InputError(f"unknown interpolation method {method!r}; choose one of {METHODS}")
    keys = np.asarray(keys, dtype=np.float32)
    if keys.ndim != 2 or keys.shape[0] < 2:
        raise InputError("interpolation needs at least two seeds or latents")
    if loop:
        keys = np.concatenate([keys, keys[:1]])
    fn = slerp if method == "slerp" else lerp
    t = np.linspace(0.0, 1.0, steps)
    segments = [fn(keys[i], keys[i + 1], t)[:-1] for i in range(len(keys) - 1)]
    if not loop:
        segments.append(keys[-1:])
    return np.concatenate(segments).astype(np.float32)


def format_seeds(seeds: Sequence[int]) -> str:
    """The inverse of parse_seeds: [0, 1, 2, 3, 100] -> "0-3,100"."""
    parts: list[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)
