"""TorchScript backend: a `.pt` written by `gan-export torchscript` (metadata in extra files)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, first_line
from ..fsutil import file_sha256
from ..spec import LoadedModel, ModelSpec, check_images, spec_from_artifact_metadata
from . import check_precision, micro_batch_for
from .torch_backend import resolve_device

_KEYS = ("gan_serve.spec", "gan_serve.precision", "gan_serve.source_sha256")


class TorchScriptBackend:
    kind = "torchscript"
    auto_reason: str | None = None
    small_passes: tuple[int, ...] = ()  # probe_small_passes sets them

    def __init__(self, module: torch.jit.ScriptModule, device: str, precision: str,
                 spec: ModelSpec | None = None) -> None:
        self.module, self.device, self.precision = module, device, precision
        self.spec = spec  # what the extra files declare; every run's images must agree
        self.micro_batch = micro_batch_for(device, spec.img_resolution if spec else None)

    @torch.no_grad()
    def run(self, z: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(self.device)
        out = self.module(x)
        if self.spec is not None:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else (type(out).__name__,)
            check_images(shape, len(z), self.spec, "the TorchScript module")
        return out.float().cpu().numpy()


def open_torchscript(path: Path, name: str, device: str, precision: str | None
                     ) -> tuple[LoadedModel, TorchScriptBackend]:
    device = resolve_device(device)
    extra = dict.fromkeys(_KEYS, "")
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still ship it
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable TorchScript file ({first_line(exc)})"
                              ) from None
    meta = {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items() if v}
    spec, artifact_precision, _ = spec_from_artifact_metadata(meta, repr(str(path)))
    precision = check_precision(artifact_precision, precision, repr(path.name))
    module.eval()
    loaded = LoadedModel(module, spec, "TorchScript", file_sha256(path), name)
    return loaded, TorchScriptBackend(module, device, precision, spec)
