"""TorchScript export: a traced z -> images module with gan-serve metadata as extra files."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from gan_serve.backends.torchscript_backend import open_torchscript
from gan_serve.errors import InputError
from gan_serve.fsutil import atomic_path
from gan_serve.spec import artifact_metadata

from .onnx import ExportRefused
from .prepared import Prepared
from .verification import VerifyReport, verify


def export_torchscript(p: Prepared, out: Path, device: str = "cpu") -> VerifyReport:
    """Trace, save atomically, reload through the runtime backend and verify."""
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA GPU here; export "
                         "with --device cpu (the file still loads on a GPU machine)")
    module = p.module.to(device)
    z = torch.zeros(2, p.spec.z_dim, device=device)
    with torch.no_grad(), warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, (z,), check_trace=False)
    extra = artifact_metadata(p.spec, p.precision, p.source_sha256)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(traced, str(tmp), _extra_files=extra)
        _, runner = open_torchscript(tmp, out.stem, device, None)
        report = verify(p.reference, runner.run, p.precision, out.name)
        if not report.passed:
            raise ExportRefused(report.render())
    return report
