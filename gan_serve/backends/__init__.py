"""Where a generator runs: torch eager, TorchScript or ONNX Runtime, behind one interface.

`open_model` picks the backend from the file (or `backend=`) and returns a `LoadedModel`
plus a `Backend`. This module and the ONNX backend never import torch, so a deployment that
serves `.onnx` files needs numpy, onnxruntime and pillow only.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import GanServeError, InputError, UnsupportedPrecisionError
from ..extras import missing, missing_extra, require
from ..latents import latents_for_seeds
from ..spec import RUN_PRECISIONS, LoadedModel, LoadOptions
from ..trust import is_torchscript, torchscript_refused

BACKENDS = ("auto", "torch", "torchscript", "onnx")
DEVICES = ("auto", "cpu", "cuda", "tensorrt")  # tensorrt: ONNX Runtime's TensorRT provider; cuda
# and tensorrt also take a GPU index, "cuda:1" (parse_device)


class Backend(Protocol):
    """Runs latents through a generator: (B, z_dim) float32 -> (B, C, H, W) float32.

    A backend may also have `run_images(z, rows) -> (uint8 images, finite per image) | None`,
    which `Generator.synthesize` prefers: the same bytes as `run` then `images.to_uint8`
    (the torch backend's DCGAN plan folds the pixel mapping into a table)."""

    kind: str  # "torch", "torchscript" or "onnx"
    device: str  # "cpu", "cuda" or "cuda:N" (a GPU index)
    precision: str  # "fp32", "bf16", "fp16" or "int8" (torch on the CPU, opt-in)
    micro_batch: int  # a pass's rows: every run() call gets this many latents, or a small pass size
    auto_reason: str | None  # why `--backend auto` chose this path; None when nothing was chosen
    # pass sizes below micro_batch that gave a full pass's bits row for row on probe latents
    # (`probe_small_passes`, run by the server at load); () until probed
    small_passes: tuple[int, ...]

    def run(self, z: np.ndarray) -> np.ndarray: ...


def describe(backend: Backend) -> str:
    """kind/device/precision, e.g. torch/cuda/fp32: the device without its index (a GPU's index
    does not change its pixels, and the provenance is the same on every GPU of a machine)."""
    return f"{backend.kind}/{parse_device(backend.device)[0]}/{backend.precision}"


def parse_device(device: str) -> tuple[str, int | None]:
    """'cuda:1' -> ('cuda', 1), 'cpu' -> ('cpu', None); one-line InputError for anything else."""
    kind, colon, index = device.partition(":")
    if kind not in DEVICES or (colon and (kind not in ("cuda", "tensorrt") or not index.isdigit())):
        raise InputError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}, "
                         "or a GPU index such as cuda:1")
    return kind, int(index) if colon else None


def cuda_device_count() -> int:
    """GPUs the CUDA driver sees (CUDA_VISIBLE_DEVICES applies), without torch: 0 without a driver."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("cuda") or ("nvcuda.dll" if os.name == "nt" else "libcuda.so.1")
    try:
        driver = ctypes.CDLL(name)
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
    except (OSError, AttributeError):
        return 0
    return count.value


def check_gpu_index(device: str, count: int, what: str) -> None:
    """A `cuda:N` that names a GPU `what` (the library) does not see is a one-line InputError."""
    index = parse_device(device)[1]
    if index is not None and index >= count:
        seen = {0: "no GPU", 1: "1 GPU (cuda:0)"}.get(count, f"{count} GPUs (cuda:0 to cuda:{count - 1})")
        fix = "; use --device cpu" if count == 0 else ""
        raise InputError(f"--device {device} was asked for, but {what} sees {seen}{fix}")


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InputError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    return value


def artifact_kind(path: Path) -> str:
    """'onnx', 'torchscript' or 'checkpoint', from the suffix and (for zips) the contents."""
    if path.suffix.lower() == ".onnx":
        return "onnx"
    return "torchscript" if is_torchscript(path) else "checkpoint"


def open_model(
    path: Path,
    name: str,
    backend: str = "auto",
    device: str = "cpu",
    precision: str | None = None,
    trust_code: bool = False,
    options: LoadOptions | None = None,
    allow_nonfinite: bool = False,
) -> tuple[LoadedModel, Backend]:
    """Load `path` and put it on a backend. `precision=None`: the artifact's own, else fp32.

    A TorchScript file runs code, so it loads only with backend="torchscript" and trust_code.
    """
    check_choice(backend, BACKENDS, "backend")
    parse_device(device)
    if precision is not None:
        check_choice(precision, RUN_PRECISIONS, "precision")
    kind = artifact_kind(path)
    if precision == "int8" and kind != "checkpoint":
        raise UnsupportedPrecisionError(
            f"--precision int8 runs checkpoints of the built-in DCGAN family on torch; {path.name!r} "
            f"is {_WHAT[kind]}: omit --precision to run it as exported, or load its checkpoint")
    if backend in ("auto", "onnx") and precision in (None, "fp32") and device == "cpu":
        found = _bundled_onnx(path, name)
        if found is not None:
            return found
    wanted = kind if backend == "auto" else backend
    if wanted == "onnx" or kind == "onnx":
        if kind != "onnx" or wanted != "onnx":
            raise InputError(_mismatch(path, kind, wanted))
        from .onnx_backend import open_onnx

        return open_onnx(path, name, device, precision)
    if kind == "torchscript" and not (backend == "torchscript" and trust_code):
        raise torchscript_refused(path)
    if wanted == "torchscript" or kind == "torchscript":
        if kind != "torchscript":
            raise InputError(_mismatch(path, kind, wanted))
        require("torch", f"running {path.name!r} (TorchScript)")
        from .torchscript_backend import open_torchscript

        return open_torchscript(path, name, device, precision)
    require("torch", f"loading {path.name!r} (a checkpoint)")
    from ..checkpoint import load_generator
    from .torch_backend import TorchBackend, auto_precision

    loaded = load_generator(path, options, name, allow_nonfinite)
    reason = None
    if backend == "auto" and precision is None:
        precision, reason = auto_precision(device)
    runner = TorchBackend(loaded.module, loaded.spec, device, precision or "fp32")
    runner.auto_reason = reason
    return loaded, runner


def _bundled_onnx(path: Path, name: str) -> tuple[LoadedModel, Backend] | None:
    """A bundled model's ONNX export, when onnxruntime is installed: ONNX Runtime is the faster
    CPU path for this small model, and it spares the ~1 s torch import (BENCHMARKS.md). The
    model id stays the checkpoint's; a stale export (made from other weights) is never used.
    Without onnxruntime the checkpoint runs on torch; with neither, the cpu extra is named."""
    from ..fsutil import file_sha256
    from ..models import bundled_onnx

    onnx_path = bundled_onnx(path, name)
    if onnx_path is None:
        return None
    if missing("onnxruntime"):
        if missing("torch"):
            raise missing_extra("cpu", f"the bundled model {name!r}", "ONNX Runtime")
        return None
    from .onnx_backend import open_onnx

    loaded, runner = open_onnx(onnx_path, name, "cpu", None)
    sha = file_sha256(path)
    if runner.source_sha256 != sha:
        return None
    runner.auto_reason = "ONNX Runtime on the bundled model's export: faster here, no torch import"
    return replace(loaded, sha256=sha, source_format=f"{loaded.source_format} export of {path.name}"), runner


_WHAT = {"onnx": "an ONNX file", "torchscript": "a TorchScript file", "checkpoint": "a checkpoint"}


def _mismatch(path: Path, kind: str, wanted: str) -> str:
    hint = {"onnx": "gan-export onnx CKPT", "torchscript": "gan-export torchscript CKPT"}
    fix = f"; make one with `{hint[wanted]}`" if wanted in hint and kind == "checkpoint" else ""
    return f"--backend {wanted} cannot run {path.name!r}: it is {_WHAT[kind]}{fix}"


def check_precision(artifact: str, asked: str | None, what: str) -> str:
    """Exported artifacts run at the precision they were exported with."""
    if asked is not None and asked != artifact:
        raise InputError(
            f"{what} was exported as {artifact}; it cannot run as {asked} "
            f"(export a {asked} variant with gan-export, or omit --precision)"
        )
    return artifact


CPU_MICRO_BATCH = 16
GPU_MICRO_BATCH = 64
# Output pixels one pass may hold: a full micro-batch up to 512x512 on the CPU and 256x256 on a
# GPU; larger images take narrower passes, so one image of a KB-sized file declaring 2048x2048
# costs one image's memory, not sixteen (SECURITY.md).
PASS_PIXELS = {"cpu": CPU_MICRO_BATCH * 512 * 512, "gpu": GPU_MICRO_BATCH * 256 * 256}


def micro_batch_for(device: str, img_resolution: int | None = None) -> int:
    """Latents per forward pass on `device` for images of `img_resolution` (None: unknown,
    the device's full width)."""
    # Fixed per (device, resolution) so an image never depends on its batch. On the CPU, 16:
    # with the DCGAN plan, 32-128 rows save only 3-4% for bulk work (BENCHMARKS.md, "Bulk at
    # scale"), and 8 halves bf16's gain; a lone request runs fewer rows where the probe shows
    # the same bits (probe_small_passes). A GPU wants wider passes.
    full = CPU_MICRO_BATCH if device == "cpu" else GPU_MICRO_BATCH
    if not img_resolution:
        return full
    cap = PASS_PIXELS["cpu" if device == "cpu" else "gpu"] // img_resolution**2
    return max(1, min(full, cap))


def probe_latents(n: int, z_dim: int) -> np.ndarray:
    """(n, z_dim) latents that probe a formulation's bits: seeds 0 to n-1, the second half scaled
    up 4x to reach saturated pixels."""
    z = latents_for_seeds(range(n), z_dim)
    z[n // 2 :] *= 4
    return z


def probe_small_passes(runner: Backend, z_dim: int) -> tuple[int, ...]:
    """The pass sizes below `runner.micro_batch` (powers of two) at which the runner gives, row
    for row, the float bits of a full micro-batch, on a micro-batch of probe latents run in
    chunks of each size; stored as `runner.small_passes` for `Generator.synthesize`, which then
    runs a pass of fewer images at the smallest such size that holds them, with the same bytes.

    Kernels may pick another algorithm at another batch size (so the bytes would change): a
    size whose bits differ anywhere, or that fails, is left out, and its passes stay full. The
    probe runs 31 passes of 80 rows in all at a micro-batch of 16 (1x16, 16x1, 8x2, 4x4, 2x8):
    about seven full passes' CPU for the examples netG (BENCHMARKS.md), paid once by a
    long-lived process, the server at load; a one-shot CLI run would pay more than it saves."""
    z = probe_latents(runner.micro_batch, z_dim)
    want = _bits(runner.run(z))
    runner.small_passes = tuple(k for k in _powers_below(runner.micro_batch)
                                if _same_bits(runner, z, want, k))
    return runner.small_passes


def _powers_below(n: int) -> list[int]:
    return [1 << i for i in range(n.bit_length()) if 1 << i < n]


def _bits(y: np.ndarray) -> np.ndarray:
    """Float output as its bit patterns, so that equal NaNs compare equal and -0.0 != 0.0."""
    return np.ascontiguousarray(y, dtype=np.float32).view(np.uint32)


def _same_bits(runner: Backend, z: np.ndarray, want: np.ndarray, size: int) -> bool:
    for start in range(0, len(z), size):
        rows = min(size, len(z) - start)
        padded = np.zeros((size, z.shape[1]), np.float32)  # zero-padded like Generator.synthesize
        padded[:rows] = z[start : start + rows]
        try:
            got = _bits(runner.run(padded))[:rows]
        except (GanServeError, RuntimeError, ValueError):  # e.g. an ONNX graph of a fixed batch
            return False
        if not np.array_equal(got, want[start : start + rows]):
            return False
    return True
