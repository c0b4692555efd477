"""A minimal stand-in for Triton's `triton_python_backend_utils` and its ensemble scheduler.

Just what gan-serve's Python model uses (Tensor with DLPack both ways, InferenceRequest inputs,
InferenceResponse, TritonError) plus a runner that follows an ensemble config's steps: Python
models through their `execute`, ONNX models through onnxruntime, as Triton would wire them.
It runs in-process in a second, so the repository's layout and the models' code are checked on
every run; tests/export/test_triton_server.py checks the same repository on a real tritonserver.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
from google.protobuf import json_format

from export import read_config


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def __dlpack__(self, **kwargs: object) -> object:
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._array.__dlpack_device__()

    @classmethod
    def from_dlpack(cls, name: str, array: np.ndarray) -> Tensor:
        if not array.flags.writeable:  # Triton 2.51's DLPack refuses read-only arrays the same way
            raise BufferError("Cannot export readonly array since signalling readonly is unsupported")
        return cls(name, np.from_dlpack(array))


class TritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self.output_tensors, self.error = output_tensors, error

    def has_error(self) -> bool:
        return self.error is not None


class InferenceRequest:
    def __init__(self, inputs: list[Tensor]) -> None:
        self.inputs = inputs


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs if t.name() == name), None)


def module() -> types.ModuleType:
    """This file as the module `triton_python_backend_utils` (what model.py imports)."""
    m = types.ModuleType("triton_python_backend_utils")
    for name in ("Tensor", "TritonError", "InferenceResponse", "InferenceRequest",
                 "get_input_tensor_by_name"):
        setattr(m, name, globals()[name])
    return m


def load_python_model(model_dir: Path) -> object:
    """Import <model_dir>/1/model.py under the stand-in and initialize it from config.pbtxt."""
    config = read_config((model_dir / "config.pbtxt").read_text())
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = module()
    try:
        path = model_dir / "1" / "model.py"
        spec = importlib.util.spec_from_file_location(f"triton_{model_dir.name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if saved is None:
            sys.modules.pop("triton_python_backend_utils")
        else:
            sys.modules["triton_python_backend_utils"] = saved
    model = mod.TritonPythonModel()
    as_json = json_format.MessageToJson(config, preserving_proto_field_name=True)
    environ = dict(os.environ)  # the generator sets gan-serve's OMP_* defaults, as in its own stub process
    try:
        model.initialize({"model_config": as_json, "model_name": config.name, "model_version": "1"})
    finally:
        os.environ.clear()
        os.environ.update(environ)
    return model


def run_ensemble(repo: Path, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Follow repo/<name>'s ensemble steps on one request; raise on a step's error response."""
    import onnxruntime as ort

    ensemble = read_config((repo / name / "config.pbtxt").read_text())
    assert ensemble.platform == "ensemble"
    tensors = dict(inputs)
    for step in ensemble.ensemble_scheduling.step:
        cfg = read_config((repo / step.model_name / "config.pbtxt").read_text())
        feed = {key: tensors[value] for key, value in step.input_map.items() if value in tensors}
        if cfg.backend == "python":  # latents, pixels, and the default generator
            request = InferenceRequest([Tensor(k, v) for k, v in feed.items()])
            (response,) = load_python_model(repo / step.model_name).execute([request])
            if response.has_error():
                raise ValueError(response.error.message())
            got = {t.name(): t.as_numpy() for t in response.output_tensors}
        else:
            assert cfg.platform == "onnxruntime_onnx"
            session = ort.InferenceSession(str(repo / step.model_name / "1" / "model.onnx"))
            names = [o.name for o in session.get_outputs()]
            got = dict(zip(names, session.run(names, feed), strict=True))
        for key, value in step.output_map.items():
            tensors[value] = got[key]
    return {o.name: tensors[o.name] for o in ensemble.output}

