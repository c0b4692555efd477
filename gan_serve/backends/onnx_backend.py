"""ONNX Runtime backend. No torch here: serving an `.onnx` needs numpy and onnxruntime only.

After the session starts we check which provider it really got (onnxruntime-gpu lists
CUDA even on machines without a GPU) and say which one runs.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, InputError, first_line
from ..extras import require_onnxruntime
from ..fsutil import file_sha256
from ..runtime import passive_wait, thread_count
from ..spec import (
    ONNX_INPUT,
    ONNX_OUTPUT,
    LoadedModel,
    ModelSpec,
    check_images,
    spec_from_artifact_metadata,
)
from . import check_gpu_index, check_precision, cuda_device_count, micro_batch_for, parse_device

_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


EXPECTED = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _providers(device: str, available: list[str], fp16: bool) -> list:
    kind, index = parse_device(device)
    gpu = {"device_id": index or 0}
    # HEURISTIC: cuDNN's exhaustive algorithm search would re-run for every new batch shape
    cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC", **gpu})
    if kind == "tensorrt":
        return [("TensorrtExecutionProvider", {"trt_fp16_enable": fp16, **gpu}), cuda,
                "CPUExecutionProvider"]
    if kind == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available):
        return [cuda, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxBackend:
    kind = "onnx"

    auto_reason: str | None = None
    small_passes: tuple[int, ...] = ()  # probe_small_passes sets them

    def __init__(self, session: object, device: str, precision: str, in_dtype: type,
                 source_sha256: str = "", spec: ModelSpec | None = None) -> None:
        self.session, self.device, self.precision = session, device, precision
        self.spec = spec  # what the metadata declares; every run's images must agree
        self.source_sha256 = source_sha256  # of the checkpoint it was exported from
        self.in_dtype = in_dtype
        self.micro_batch = micro_batch_for(device, spec.img_resolution if spec else None)
        self.device_id = parse_device(device)[1] or 0
        self.provider = session.get_providers()[0]

    def run(self, z: np.ndarray) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=self.in_dtype)
        try:
            out = self._forward(z)
        except Exception as exc:  # ORT's own exception types: the graph failed on its input
            raise CheckpointError(f"the ONNX graph failed on latents of shape {z.shape} "
                                  f"({first_line(exc, 200)})"
                                  ) from None
        if self.spec is not None:  # a graph with symbolic dims may disagree with its metadata
            check_images(out.shape, len(z), self.spec, "the ONNX graph")
        return np.asarray(out, dtype=np.float32)

    def _forward(self, z: np.ndarray) -> np.ndarray:
        if self.device != "cpu":  # IO binding: output stays on the GPU until one copy back
            binding = self.session.io_binding()
            binding.bind_cpu_input(ONNX_INPUT, z)
            binding.bind_output(ONNX_OUTPUT, "cuda", self.device_id)
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: z})[0]


def _check_io(session: object, path: Path) -> type:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    found = ", ".join(f"input {i.name} {i.shape}" for i in inputs) + "; " + ", ".join(
        f"output {o.name} {o.shape}" for o in outputs)
    ok = (len(inputs) == 1 and inputs[0].name == ONNX_INPUT and len(inputs[0].shape) == 2
          and inputs[0].type in _NP_TYPES
          and any(o.name == ONNX_OUTPUT and len(o.shape) == 4 for o in outputs))
    if not ok:
        raise CheckpointError(
            f"{path.name!r} is not a generator ONNX model: expected input {ONNX_INPUT!r} "
            f"(batch, z_dim) and output {ONNX_OUTPUT!r} (batch, C, H, W); found {found}"
        )
    return _NP_TYPES[inputs[0].type]


def check_graph_agrees(session: object, spec: ModelSpec, path: Path) -> None:
    """CheckpointError unless every fixed dim of the graph's z and images is the one its
    gan_serve.* metadata declares (the images are sized from the metadata); symbolic dims are
    checked on every run instead (OnnxBackend.run)."""
    z = session.get_inputs()[0].shape
    images = next(o.shape for o in session.get_outputs() if o.name == ONNX_OUTPUT)
    want = {"z_dim": (z[1], spec.z_dim), "channels": (images[1], spec.channels),
            "height": (images[2], spec.img_resolution), "width": (images[3], spec.img_resolution)}
    wrong = [f"{k} {graph} (metadata: {meta})" for k, (graph, meta) in want.items()
             if isinstance(graph, int) and graph != meta]
    if wrong:
        raise CheckpointError(f"{path.name!r}: its gan-serve metadata does not match its graph: "
                              + "; ".join(wrong) + "; re-export it with gan-export")


def open_onnx(path: Path, name: str, device: str, precision: str | None
              ) -> tuple[LoadedModel, OnnxBackend]:
    require_onnxruntime(f"running {path.name!r}")
    import onnxruntime as ort

    if not path.is_file():
        raise CheckpointError(f"no such file: {str(path)!r}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings are not for end users
    options.intra_op_num_threads = thread_count()
    if passive_wait():  # the entry points chose sleeping threads (gan_serve.runtime)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # A GPU provider that cannot start (no GPU, no CUDA/TensorRT libraries) makes ORT print a
    # screenful before it falls back; we check what it got below and say so in one line.
    ort.set_default_logger_severity(4 if device != "cpu" else 3)
    kind, index = parse_device(device)
    if index is not None and EXPECTED[kind] in ort.get_available_providers():
        check_gpu_index(device, cuda_device_count(), "the CUDA driver")
    try:  # ORT's Python layer also prints "EP Error ... Falling back": keep it off the terminal
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():  # the CPU package warns of a GPU provider it lacks
            warnings.simplefilter("ignore", UserWarning)
            session = ort.InferenceSession(
                str(path), options,
                providers=_providers(device, ort.get_available_providers(), precision == "fp16"))
    except Exception as exc:  # ORT raises its own pybind exception types
        raise CheckpointError(f"{str(path)!r} is not a readable ONNX model ({first_line(exc, 200)})"
                              ) from None
    finally:
        ort.set_default_logger_severity(3)
    got = session.get_providers()[0]
    if kind in EXPECTED and got != EXPECTED[kind]:
        raise InputError(
            f"--device {device} was asked for, but ONNX Runtime runs on {got}: no usable GPU or "
            f"{'TensorRT' if kind == 'tensorrt' else 'CUDA'} libraries here; use --device cpu"
        )
    in_dtype = _check_io(session, path)
    meta = session.get_modelmeta().custom_metadata_map
    spec, artifact_precision, source_sha = spec_from_artifact_metadata(meta, repr(str(path)))
    check_graph_agrees(session, spec, path)
    precision = check_precision(artifact_precision, precision, repr(path.name))
    real_device = "cpu" if got == "CPUExecutionProvider" else "cuda" if index is None else f"cuda:{index}"
    loaded = LoadedModel(None, spec, f"ONNX ({got})", file_sha256(path), name)
    return loaded, OnnxBackend(session, real_device, precision, in_dtype, source_sha, spec)
