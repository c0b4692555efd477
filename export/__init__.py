"""gan-export: TorchScript and ONNX (fp32, fp16 for CUDA) artifacts, verified against the
original checkpoint before they are written, plus a Triton model repository whose ensemble
takes seeds and returns uint8 pixels.

    from export import export_onnx, prepare
    from gan_serve import load
    report = export_onnx(prepare(load("g_epoch_85.pth"), fp16=True, fold_bn=True), Path("g.onnx"))
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

DEFAULT_OPSET = 17  # here, not in .onnx, so `gan-export --help` shows it without importing torch
# Triton backends of the generator step; the first is the default (.triton's docstring says why)
GENERATOR_BACKENDS = ("python", "onnxruntime")

if TYPE_CHECKING:
    from .onnx import ExportRefused, export_onnx
    from .prepared import Prepared, prepare
    from .torchscript import export_torchscript
    from .triton import config_pbtxt, read_config, recipe_files, write_repository
    from .verification import VerifyReport, verify

# name -> submodule, loaded on first use (PEP 562) so the CLI starts without torch. No submodule
# is named like a function here: importing one sets it as the package's attribute.
_HOMES = {
    "ExportRefused": "onnx", "export_onnx": "onnx", "Prepared": "prepared", "prepare": "prepared",
    "export_torchscript": "torchscript", "config_pbtxt": "triton", "read_config": "triton",
    "recipe_files": "triton", "write_repository": "triton", "VerifyReport": "verification",
    "verify": "verification",
}

__all__ = [
    "ExportRefused", "Prepared", "VerifyReport", "config_pbtxt", "export_onnx",
    "export_torchscript", "prepare", "read_config", "recipe_files", "verify", "write_repository",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
