"""gan-export: TorchScript and ONNX (fp32, fp16 for CUDA) artifacts, verified against the
original checkpoint before they are written, plus a Triton model repository.

    from export import export_onnx, prepare
    from gan_serve import load
    report = export_onnx(prepare(load("g_epoch_85.pth"), fp16=True, fold_bn=True), Path("g.onnx"))
"""

from .onnx import ExportRefused, export_onnx
from .prepare import Prepared, prepare
from .torchscript import export_torchscript
from .triton import config_pbtxt, parse_pbtxt, write_repository
from .verify import VerifyReport, verify

__all__ = [
    "ExportRefused", "Prepared", "VerifyReport", "config_pbtxt", "export_onnx",
    "export_torchscript", "parse_pbtxt", "prepare", "verify", "write_repository",
]
