"""`ImageGenerator`: what output writing, bulk generation, ranking, inspection and serving use
of a loaded generator. `gan_serve.Generator` is one; a test or a wrapper may be another.

Torch-free, so the ONNX serving path can name it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .spec import LoadedModel, ModelSpec

if TYPE_CHECKING:
    from PIL import Image

    from .backends import Backend

Progress = Callable[[int], None]  # called with the number of images just finished


class ImageGenerator(Protocol):
    """Seeds or latents (N, z_dim) in, uint8 images (N, H, W, C) out, with their provenance."""

    loaded: LoadedModel  # the module (None for ONNX), its spec, source format, sha256 and name
    runner: Backend  # where the forward passes run

    @property
    def spec(self) -> ModelSpec: ...
    @property
    def z_dim(self) -> int: ...
    @property
    def img_resolution(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def model_id(self) -> str: ...  # file stem + "@sha256:" + 12 hex
    @property
    def backend(self) -> str: ...  # kind/device/precision, e.g. "torch/cpu/fp32"
    @property
    def module(self) -> object: ...  # the torch module; None for ONNX

    def latents(self, seeds: Iterable[int]) -> np.ndarray: ...

    def synthesize(self, z: np.ndarray, progress: Progress | None = None) -> np.ndarray: ...

    def probe_small_passes(self) -> tuple[int, ...]: ...  # the server runs it at load

    def generate(self, seeds: Iterable[int], truncation_psi: float = 1.0, *, pil: bool = False,
                 progress: Progress | None = None) -> np.ndarray | list[Image.Image]: ...

    def provenance(self, seeds: Sequence[int] | None = None, truncation_psi: float = 1.0,
                   **extra: object) -> dict[str, str]: ...
