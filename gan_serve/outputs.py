"""Output files from generated images: the one place the CLI and HTTP turn images into bytes,
so the same request gives the same bytes from both, and the one owner of provenance: its keys
are built here (`provenance`, which a request's `provenance(G)` and `Generator.provenance`
call) and rendered here as file text chunks or HTTP headers."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import images as img
from . import latents as lat
from .errors import InputError
from .fsutil import atomic_path
from .protocols import ImageGenerator

if TYPE_CHECKING:
    from .video import VideoOptions

DEFAULT_DURATION_MS = 80  # animation frame duration
# The short headers HTTP has always sent, each rendered from the provenance key it names.
SEEDS_KEY = "gan_serve.seeds"
SHORT_HEADERS = {SEEDS_KEY: "X-Seeds", "gan_serve.model": "X-Model",
                 "gan_serve.backend": "X-Backend", "gan_serve.truncation_psi": "X-Truncation"}


def seed_filename(seed: int, fmt: str) -> str:
    """`seed0042.png`: one image per seed, as --individual and zip layouts name them."""
    return f"seed{seed:04d}{img.EXTENSIONS[fmt]}"


def provenance(G: ImageGenerator, seeds: Sequence[int] | None = None, truncation_psi: float = 1.0,
               **extra: object) -> dict[str, str]:
    """Text that travels with every output file and response: what made it (model, backend,
    micro-batch, recipe), from which seeds and psi, and `extra` (method/steps/loop, ranked_from)
    as `gan_serve.<key>`; nothing that changes run to run (time, host, path)."""
    meta = {
        "Software": "gan-serve",
        "gan_serve.model": G.model_id,
        "gan_serve.backend": G.backend,
        "gan_serve.micro_batch": str(G.runner.micro_batch),
        "gan_serve.recipe": str(lat.RECIPE_VERSION),
        "gan_serve.truncation_psi": repr(float(truncation_psi)),
    }
    if (calibration := getattr(G.runner, "calibration", None)) is not None:  # int8 only
        meta["gan_serve.calibration"] = calibration
    if seeds is not None:
        meta[SEEDS_KEY] = lat.format_seeds(list(seeds))
    meta.update({f"gan_serve.{k}": str(v) for k, v in extra.items()})
    return meta


def headers(meta: Mapping[str, str]) -> dict[str, str]:
    """HTTP headers of a provenance: `gan_serve.truncation_psi` -> `X-Gan-Serve-Truncation-Psi`
    (every key, the recipe version included), plus the short X-Seeds/X-Model/X-Backend/
    X-Truncation."""
    out = {}
    for key, value in meta.items():
        if key.startswith("gan_serve."):
            words = key.removeprefix("gan_serve.").split("_")
            out["X-Gan-Serve-" + "-".join(w.capitalize() for w in words)] = value
    out.update({name: meta[key] for key, name in SHORT_HEADERS.items() if key in meta})
    return out


def grid_file(images: np.ndarray, nrow: int | None, fmt: str, meta: Mapping[str, str]) -> bytes:
    """A make_grid image of `images` carrying `meta`."""
    return img.encode_image(img.make_grid(images, nrow), fmt, meta)


def path_file(frames: np.ndarray, fmt: str, animate: bool, meta: Mapping[str, str],
              nrow: int | None = None, duration_ms: int = DEFAULT_DURATION_MS,
              video: VideoOptions | None = None) -> bytes:
    """An interpolation as a strip (all frames in one row unless `nrow`), an animation, or with
    `video` options an .mp4/.webm (gan_serve.video: the `video` extra)."""
    if video is not None:
        from .video import encode_video

        return encode_video(frames, fmt, video, meta)
    if animate:
        return img.encode_animation(frames, fmt, duration_ms, meta)
    return img.encode_image(img.make_grid(frames, len(frames) if nrow is None else nrow), fmt, meta)


def single_bytes(G: ImageGenerator, seed: int, image: np.ndarray, truncation: float, fmt: str) -> bytes:
    """One seed's image as a file with its own provenance."""
    return img.encode_image(image, fmt, provenance(G, [seed], truncation))


def single_encoder(G: ImageGenerator, truncation: float, fmt: str) -> Callable[[int, np.ndarray], bytes]:
    """`encode(seed, image)`, the bytes of `single_bytes(G, seed, image, truncation, fmt)`, for
    the many seeds of one run (`generate --individual`): the provenance every file shares is
    built, and for PNG rendered as text chunks, once; only the seed's chunk is made per file."""
    meta = provenance(G, None, truncation)  # single_bytes' keys in its order, the seeds last
    if fmt != "png":
        return lambda seed, image: img.encode_image(
            image, fmt, {**meta, SEEDS_KEY: lat.format_seeds([seed])})
    png = img.png_encoder(meta, SEEDS_KEY)
    return lambda seed, image: png(image, lat.format_seeds([seed]))


def latents_file(z: np.ndarray) -> bytes:
    """Latents (N, z_dim) as the bytes of a float32 .npy file (`generate --latents-out`)."""
    buf = io.BytesIO()
    np.save(buf, z.astype(np.float32))
    return buf.getvalue()


def save_latents(path: Path, z: np.ndarray) -> None:
    """Latents (N, z_dim) as a float32 .npy file (`generate --latents-out`), written atomically."""
    if path.suffix != ".npy":
        raise InputError(f"latents are saved as .npy, got {path.name!r}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(latents_file(z))
