"""gan-export: TorchScript and ONNX (fp32, fp16 for CUDA) artifacts, verified against the
original checkpoint before they are written, plus a Triton model repository whose ensemble
takes seeds and returns uint8 pixels.

    from export import export_onnx, prepare
    from gan_serve import load
    report = export_onnx(prepare(load("g_epoch_85.pth"), fp16=True, fold_bn=True), Path("g.onnx"))
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

DEFAULT_OPSET = 17  # here, not in .onnx, so `gan-export --help` shows it without importing torch
# Triton backends of the generator step; the first is the default (.triton's docstring says why)
GENERATOR_BACKENDS = ("python", "onnxruntime")

if TYPE_CHECKING:
    from .onnx import ExportRefused, export_onnx
    from .prepare import Prepared, prepare
    from .torchscript import export_torchscript
    from .triton import config_pbtxt, read_config, recipe_files, write_repository
    from .verify import VerifyReport, verify

_HOMES = {  # name -> submodule; loaded on first use so the CLI starts without torch
    "ExportRefused": "onnx", "export_onnx": "onnx", "Prepared": "prepare", "prepare": "prepare",
    "export_torchscript": "torchscript", "config_pbtxt": "triton", "read_config": "triton",
    "recipe_files": "triton", "write_repository": "triton", "VerifyReport": "verify", "verify": "verify",
}

__all__ = [
    "ExportRefused", "Prepared", "VerifyReport", "config_pbtxt", "export_onnx",
    "export_torchscript", "prepare", "read_config", "recipe_files", "verify", "write_repository",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")


class _Package(types.ModuleType):
    # `prepare` and `verify` are both functions of this package and names of its submodules.
    # Importing a submodule sets it as an attribute of the package; keep the functions instead
    # (the submodules stay reachable as `from export.prepare import ...` via sys.modules).
    def __setattr__(self, name: str, value: object) -> None:
        if name in _HOMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
