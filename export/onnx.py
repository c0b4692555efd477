"""ONNX export: dynamic batch, one self-contained file, gan-serve metadata, verified."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from gan_serve.backends.onnx_backend import open_onnx
from gan_serve.errors import InputError
from gan_serve.fsutil import atomic_path
from gan_serve.spec import ONNX_INPUT, ONNX_OUTPUT, ModelSpec, artifact_metadata

from . import DEFAULT_OPSET
from .prepared import Prepared
from .verification import VerifyReport, verify


class ExportRefused(InputError):
    """The artifact disagreed with the original beyond tolerance; nothing was written."""


def write_onnx(p: Prepared, tmp: Path, opset: int, max_batch: int | None) -> None:
    """torch -> ONNX at `tmp`, then stamp the metadata the runtime reads."""
    z = torch.zeros(2, p.spec.z_dim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notes
        torch.onnx.export(
            p.module, (z,), str(tmp), input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
            opset_version=opset, dynamo=False,
        )
    model = onnx.load(str(tmp))
    meta = artifact_metadata(p.spec, p.precision, p.source_sha256)
    if max_batch is not None:
        meta["gan_serve.max_batch"] = str(max_batch)
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.graph.input[0].doc_string, model.graph.output[0].doc_string = io_docs(p.spec)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))  # < 2 GB: one self-contained file, no .onnx.data


def io_docs(spec: ModelSpec) -> tuple[str, str]:
    """What the graph's input and output hold, for anyone opening the file (netron, onnx)."""
    lo, hi = spec.output_range
    z = (f"z: latents (batch, {spec.z_dim}) float32, recipe v{spec.recipe_version}: seed s -> "
         f"numpy.random.RandomState(s).randn({spec.z_dim}) as float32; truncation psi: z * psi")
    images = (f"images: (batch, {spec.channels}, {spec.img_resolution}, {spec.img_resolution}) "
              f"float32 in [{lo:g}, {hi:g}]; uint8 = round((x - {lo:g}) / ({hi:g} - {lo:g}) * 255) "
              "clamped to [0, 255]")
    return z, images


def verify_onnx_file(p: Prepared, path: Path, name: str) -> VerifyReport:
    _, runner = open_onnx(path, name, "cpu", None)
    return verify(p.reference, runner.run, runner.precision, name)


def export_onnx(p: Prepared, out: Path, opset: int = DEFAULT_OPSET,
                max_batch: int | None = None) -> VerifyReport:
    """Export, verify, and only then move the file into place (nothing left on refusal)."""
    if not 7 <= opset <= 21:
        raise InputError(f"--opset must be from 7 to 21, got {opset}")
    if max_batch is not None and max_batch < 1:
        raise InputError(f"--max-batch must be at least 1, got {max_batch}")
    with atomic_path(out) as tmp:
        write_onnx(p, tmp, opset, max_batch)
        report = verify_onnx_file(p, tmp, out.name)
        if not report.passed:
            raise ExportRefused(report.render())
    return report


def onnx_io(path: Path) -> tuple[list[tuple[str, int, list]], list[tuple[str, int, list]]]:
    """(name, elem_type, dims) of a model's inputs and outputs; dims use names for symbols."""
    model = onnx.load(str(path), load_external_data=False)

    def dims(vi: onnx.ValueInfoProto) -> list:
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    return ([(i.name, i.type.tensor_type.elem_type, dims(i)) for i in model.graph.input],
            [(o.name, o.type.tensor_type.elem_type, dims(o)) for o in model.graph.output])


def initializer_dtypes(path: Path) -> set[np.dtype]:
    model = onnx.load(str(path))
    return {onnx.helper.tensor_dtype_to_np_dtype(t.data_type) for t in model.graph.initializer}
