"""The Python API: `Generator.load(path)` and `.generate(seeds)`, `.grid`, `.interpolate`.

The CLI and HTTP layers are thin wrappers over this class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from . import images as img
from . import latents as lat
from . import outputs as out
from .backends import Backend, describe, open_model, probe_small_passes
from .directions import Directions, LatentEdit, resolve_edit
from .errors import CheckpointError, InputError, UnknownArchitectureError
from .limits import DEFAULT_LIMITS
from .models import resolve_model
from .protocols import Progress
from .request import PathRequest, SeedRequest, WalkRequest
from .spec import LoadedModel, LoadOptions, ModelSpec

if TYPE_CHECKING:
    from .projection import Projection, ProjectOptions
    from .targets import TargetSource

# Every forward pass runs on exactly `runner.micro_batch` latents (the last chunk zero-padded;
# see backends.micro_batch_for), so an image's bytes never depend on how many were requested
# with it: conv kernels pick batch-size-dependent code paths whose float results differ in
# the last bits. The one exception: a chunk of fewer images runs at a smaller size where the
# runner was shown to give a full pass's bits at that size (backends.probe_small_passes).


class Generator:
    """A loaded generator that turns seeds (or latents) into uint8 images."""

    def __init__(self, loaded: LoadedModel, backend: Backend | None = None) -> None:
        self.loaded = loaded
        if backend is None:
            from .backends.torch_backend import TorchBackend

            backend = TorchBackend(loaded.module, loaded.spec)
        self.runner: Backend = backend

    # -- construction -------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model: str | Path | None = None,
        *,
        backend: str = "auto",
        device: str = "cpu",
        precision: str | None = None,
        arch: str | None = None,
        arch_kwargs: dict | None = None,
        output_range: tuple[float, float] | None = None,
        z_dim: int | None = None,
        options: LoadOptions | None = None,
        trust_code: bool = False,
        allow_nonfinite: bool = False,
    ) -> Generator:
        """Load a checkpoint, an exported .onnx/.pt artifact, or a bundled model name.

        `backend` auto picks torch for checkpoints and onnx for .onnx; `precision` None means
        the artifact's own (fp32 for checkpoints). A TorchScript file is a program: it loads
        only with backend="torchscript" and trust_code=True (this runs code from the file).
        `arch="module:Class"` imports that class (found in the current folder first; a file's
        metadata never imports code); `arch`, `arch_kwargs`, `output_range` and `z_dim` are the
        fields of `LoadOptions`, which `options` gives as one value instead.
        Weights holding NaN or Inf are refused unless `allow_nonfinite` (for inspection).
        """
        fields = (arch, arch_kwargs, output_range, z_dim)
        if options is not None and any(f is not None for f in fields):
            raise InputError("give either options=LoadOptions(...) or its fields, not both")
        path, name = resolve_model(model)
        try:
            loaded, runner = open_model(path, name, backend, device, precision, trust_code,
                                        options or LoadOptions(*fields), allow_nonfinite)
        except UnknownArchitectureError as exc:
            from .discriminator import discriminator_instead

            raise discriminator_instead(path, exc) from None
        return cls(loaded, runner)

    @classmethod
    def from_module(
        cls,
        module: object,
        z_dim: int,
        output_range: tuple[float, float] = (-1.0, 1.0),
        name: str = "module",
    ) -> Generator:
        """Wrap an in-memory torch generator module (for notebooks and training previews)."""
        from .checkpoint import probe_custom
        from .seam import takes_flat_z

        spec = ModelSpec(arch=f"{type(module).__module__}:{type(module).__qualname__}",
                         z_dim=z_dim, output_range=output_range, z_layout="auto")
        module = module.eval()
        probe_custom(module, spec)
        return cls(LoadedModel(takes_flat_z(module, spec), spec, "in-memory module", "0" * 64, name))

    # -- facts --------------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        return self.loaded.spec

    @property
    def z_dim(self) -> int:
        return self.spec.z_dim

    @property
    def img_resolution(self) -> int:
        return self.spec.img_resolution

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def model_id(self) -> str:
        return f"{self.loaded.name}@sha256:{self.loaded.sha256[:12]}"

    @property
    def backend(self) -> str:
        """Where it runs, e.g. "torch/cpu/fp32" or "onnx/cpu/fp16"."""
        return describe(self.runner)

    @property
    def auto_note(self) -> str | None:
        """What `--backend auto` chose and how to pin it; None when it had no choice to make."""
        reason = getattr(self.runner, "auto_reason", None)
        if reason is None:
            return None
        r = self.runner
        return (f"backend auto: {self.backend}, micro-batch {r.micro_batch} ({reason}); "
                f"pin it with --backend {r.kind} --precision {r.precision}")

    @property
    def precision_note(self) -> str | None:
        """A one-line note when this precision is slow here (bf16 on a CPU without bf16 hardware)."""
        if self.runner.kind == "onnx":  # ONNX Runtime runs no bf16 here, and torch may be absent
            return None
        from .backends.torch_backend import slow_bf16_note

        return slow_bf16_note(self.runner.device, self.runner.precision)

    @property
    def module(self) -> object:
        """The torch module (torch and TorchScript backends), None for ONNX."""
        return self.loaded.module

    @property
    def is_placeholder(self) -> bool:
        return bool(self.spec.training.get("placeholder"))

    # -- images -------------------------------------------------------------------------
    def latents(self, seeds: Iterable[int]) -> np.ndarray:
        """(N, z_dim) float32 latents of `seeds` (recipe v1)."""
        return lat.latents_for_seeds(lat.check_seeds(seeds, DEFAULT_LIMITS.max_n), self.z_dim)

    def synthesize(self, z: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Run the generator on latents (N, z_dim); return uint8 images (N, H, W, C)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InputError(f"latents must have shape (N, {self.z_dim}), got {z.shape}")
        mb = self.runner.micro_batch
        out = np.empty((len(z), self.img_resolution, self.img_resolution, self.channels), np.uint8)
        for start in range(0, len(z), mb):
            chunk = z[start : start + mb]
            padded = np.zeros((self._pass_rows(len(chunk)), self.z_dim), np.float32)
            padded[: len(chunk)] = chunk
            pixels, finite = self._pixels(padded, len(chunk))
            if not finite.all():  # never write NaN-derived pixels
                raise CheckpointError(f"{self.model_id} produced NaN or infinite values; no image "
                                      "was written (`gan-serve inspect` checks its weights)")
            out[start : start + len(chunk)] = pixels
            if progress:
                progress(len(chunk))
        return out

    def probe_small_passes(self) -> tuple[int, ...]:
        """Let passes of fewer images than the micro-batch run at a smaller size where this
        machine's kernels give the same bits there (`backends.probe_small_passes`): a lone image
        then costs one row, not a micro-batch. Costs about seven full passes' CPU, once; the
        server runs it at load. Returns the sizes found (none: every pass stays full)."""
        return probe_small_passes(self.runner, self.z_dim)

    def _pass_rows(self, images: int) -> int:
        """Rows of the pass for `images` latents: the smallest probed size that holds them, else
        the micro-batch."""
        sizes = getattr(self.runner, "small_passes", ())
        return next((k for k in sizes if k >= images), self.runner.micro_batch)

    def _pixels(self, z: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images of the first `rows` latents of one micro-batch z, and per image whether
        the generator's output was finite; a backend's own `run_images` where it has one (the
        torch DCGAN plan folds the pixel mapping into a table), else `run` and images.to_uint8."""
        fast = getattr(self.runner, "run_images", None)
        got = fast(z, rows) if fast is not None else None
        if got is not None:
            return got
        y = self.runner.run(z)[:rows]
        return img.to_uint8(y, self.spec.output_range), np.isfinite(y).reshape(rows, -1).all(axis=1)

    def generate(
        self,
        seeds: Iterable[int] | SeedRequest,
        truncation_psi: float = 1.0,
        *,
        edit: str | dict[str, float] | LatentEdit | None = None,
        directions: Directions | str | Path | None = None,
        pil: bool = False,
        progress: Progress | None = None,
    ) -> np.ndarray | list[Image.Image]:
        """Images of `seeds` (or of a SeedRequest's seeds, candidates included), as uint8
        (N, H, W, C) or, with pil=True, a list of PIL images. `edit` ("pc0=+2,hair_blue=-1" or
        {"pc0": 2.0}) moves every latent along `directions` (a Directions or its file)."""
        req = SeedRequest.of(seeds, truncation_psi, edit=resolve_edit(edit, directions, self.z_dim))
        req.check_output(self)  # the output budget, before any image is made
        out = self.synthesize(req.latents(self.z_dim), progress)
        return [img.to_pil(a) for a in out] if pil else out

    def grid(
        self, seeds: Sequence[int], nrow: int | None = None, truncation_psi: float = 1.0,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """One (H, W, C) uint8 grid of `seeds`, laid out like torchvision's make_grid."""
        req = SeedRequest.of(seeds, truncation_psi)
        req.check_output(self, nrow=nrow, grid=True)
        return img.make_grid(self.generate(req, progress=progress), nrow)

    def interpolate(
        self,
        seeds: Sequence[int] | PathRequest | None = None,
        *,
        latents: np.ndarray | None = None,
        steps: int = 16,
        method: str = "slerp",
        loop: bool = False,
        truncation_psi: float = 1.0,
        edit: str | dict[str, float] | LatentEdit | None = None,
        directions: Directions | str | Path | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Frames (T, H, W, C) along a slerp/lerp path through key `seeds` or key `latents`
        (K, z_dim), or a PathRequest; frame 0 equals the first key's image. `edit` moves every
        frame (see generate)."""
        if isinstance(seeds, PathRequest):
            req = seeds
        else:
            keys = None if seeds is None else tuple(lat.check_seeds(seeds, DEFAULT_LIMITS.max_keys))
            req = PathRequest(keys, latents, steps, method, loop, truncation_psi,
                              edit=resolve_edit(edit, directions, self.z_dim))
        req.check_output(self)
        return self.synthesize(req.latents(self.z_dim), progress)

    def walk(self, seed: int | WalkRequest, direction: str | None = None,
             directions: Directions | str | Path | None = None, *, steps: int = 9,
             span: tuple[float, float] = (-3.0, 3.0), truncation_psi: float = 1.0,
             progress: Progress | None = None) -> np.ndarray:
        """Frames (steps, H, W, C) of `seed` moved along `direction` by strengths evenly
        spaced over `span` (a WalkRequest as is)."""
        if isinstance(seed, WalkRequest):
            req = seed
        else:
            if direction is None or directions is None:
                raise InputError("a walk needs a direction and the directions it is in")
            if not isinstance(directions, Directions):
                directions = Directions.load(directions)
            req = WalkRequest(seed, direction, directions, steps, span, truncation_psi)
        req.check_output(self)
        return self.synthesize(req.latents(self.z_dim), progress)

    def project(self, images: Sequence[TargetSource], options: ProjectOptions | None = None, *,
                discriminator: object = None, progress: Progress | None = None, **fields: object
                ) -> Projection:
        """The latents whose images are closest to `images` (paths, file bytes, PIL images or
        uint8 arrays): a gan_serve.projection.Projection (latents, images, psnr, ssim, files).
        `options` is a ProjectOptions, or give its fields (steps=, starts=, seed=, ...)."""
        from .projection import ProjectOptions, project

        if options is not None and fields:
            raise InputError("give either options=ProjectOptions(...) or its fields, not both")
        try:
            options = options or ProjectOptions(**fields)
        except TypeError as exc:
            raise InputError(f"project: {exc}") from None
        return project(self, images, options, discriminator=discriminator, progress=progress)

    def provenance(self, seeds: Sequence[int] | None = None, truncation_psi: float = 1.0,
                   **extra: object) -> dict[str, str]:
        """Text that travels with every output file: nothing that changes run to run
        (built by gan_serve.outputs.provenance)."""
        return out.provenance(self, seeds, truncation_psi, **extra)

    def save(self, path: str | Path, fp16: bool = False) -> Path:
        """Write this generator in the native format (safetensors + spec); torch models only."""
        if self.runner.kind != "torch":
            raise InputError(f"only checkpoint-backed generators can be saved, not {self.backend}")
        import torch

        from .checkpoint import save_native

        return save_native(self.module, self.spec, path, torch.float16 if fp16 else torch.float32)


def load(model: str | Path | None = None, **kwargs: object) -> Generator:
    """`gan_serve.load("g_epoch_85.pth")`: shorthand for Generator.load."""
    return Generator.load(model, **kwargs)
