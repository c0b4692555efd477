"""gan-serve: load DCGAN-style generators and turn seeds into reproducible images.

    import gan_serve
    G = gan_serve.load("g_epoch_85.pth")
    images = G.generate(seeds=range(64))          # uint8 (64, H, W, C)
    grid = G.grid(range(64))                       # one make_grid-style image

Torch-dependent parts are imported on first use, so `gan_serve.latents` and
`gan_serve.images` work in a torch-free deployment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    CheckpointError,
    GanServeError,
    InputError,
    OutputError,
    UnknownArchitectureError,
    UnsafeCheckpointError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .generator import Generator, load

__all__ = [
    "CheckpointError",
    "GanServeError",
    "Generator",
    "InputError",
    "OutputError",
    "UnknownArchitectureError",
    "UnsafeCheckpointError",
    "load",
]


def __getattr__(name: str) -> Any:
    if name in ("Generator", "load"):
        from . import generator

        return getattr(generator, name)
    raise AttributeError(f"module 'gan_serve' has no attribute {name!r}")
