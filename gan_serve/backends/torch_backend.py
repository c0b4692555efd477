"""Torch eager backend: fp32; bf16 on the CPU as bf16 weights converted once, channels_last;
bf16/fp16 autocast on CUDA; int8 on CPUs with int8 dot products (`int8_plan`, opt-in)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..errors import InputError, UnsupportedPrecisionError
from ..spec import ModelSpec
from . import check_gpu_index, micro_batch_for, parse_device
from .dcgan_plan import DCGANPlan
from .int8_plan import CALIBRATION, Int8Plan

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, since torch 2.1


def cpu_bf16_is_native() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles). Without either,
    oneDNN emulates bf16 and autocast runs several times slower than fp32 (BENCHMARKS.md).
    True when this torch has neither probe: no claim is better than a false alarm."""
    probes = [probe for name in _BF16_PROBES if callable(probe := getattr(torch.cpu, name, None))]
    return not probes or any(probe() for probe in probes)


def slow_bf16_note(device: str, precision: str) -> str | None:
    """A one-line note when bf16 was asked for on a CPU that can only emulate it, else None."""
    if precision != "bf16" or device != "cpu" or cpu_bf16_is_native():
        return None
    return (f"note: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bf16 hardware "
            "(AVX512-BF16 or AMX): bf16 is emulated and runs several times slower than fp32 here; "
            "use --precision fp32")


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a (transposed) conv in a Sequential.

    Eval-mode BN is y = (x - mean) * g / sqrt(var + eps) + b: a per-channel scale and shift
    that the conv's weight and bias absorb exactly (up to float rounding). Returns the count.
    """
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if not (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if conv.groups != 1 or bn.running_mean is None:
                continue
            scale = (bn.weight if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias if bn.affine else torch.zeros_like(scale)
            out_dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0  # ConvT: (in, out, k, k)
            shape = [1, 1, 1, 1]
            shape[out_dim] = -1
            conv.weight.mul_(scale.reshape(shape))
            old_bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
            conv.bias = nn.Parameter((old_bias - bn.running_mean) * scale + shift)
            seq[i + 1] = nn.Identity()
            folded += 1
    return folded


def auto_precision(device: str) -> tuple[str, str | None]:
    """What `--backend auto` runs a checkpoint at on `device`: bf16 on a CPU with bf16 hardware
    (2-3x fp32 there, BENCHMARKS.md), else fp32. Returns (precision, why) with why None for fp32."""
    if resolve_device(device) == "cpu" and cpu_bf16_is_native():
        isa = torch.backends.cpu.get_cpu_capability()
        return "bf16", f"bf16 weights and channels_last: this CPU computes bf16 in hardware ({isa})"
    return "fp32", None


def resolve_device(device: str) -> str:
    """'auto' -> cuda when torch sees a GPU, else cpu; 'cuda' without a GPU, or a 'cuda:N' with no
    GPU N, is an error."""
    kind, _ = parse_device(device)
    if kind == "tensorrt":
        raise InputError("--device tensorrt runs ONNX Runtime's TensorRT provider: serve an exported "
                         ".onnx file (gan-export onnx), or use --device cuda")
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if kind == "cuda" and not has_cuda:
        raise InputError(f"--device {device} was asked for, but torch sees no CUDA GPU; use --device cpu")
    if kind == "cuda":
        check_gpu_index(device, torch.cuda.device_count(), "torch")
    return device


def _int8_device(device: str) -> str:
    """int8 runs on the CPU's int8 dot products: `auto` means the CPU, a GPU is an error."""
    if parse_device(device)[0] not in ("cpu", "auto"):
        raise UnsupportedPrecisionError(f"--precision int8 runs on the CPU only, not --device {device}; "
                                        "on a GPU use --precision fp16, bf16 or fp32")
    return "cpu"


class TorchBackend:
    """Runs an eval-mode nn.Module. CPU bf16 runs a bf16, channels_last copy of the module
    (converted once: autocast would re-cast the fp32 weights on every pass), as a DCGANPlan
    where the probe at load shows it gives the copy's bits; `module` itself stays fp32 for
    saving and export. CUDA bf16/fp16 use autocast."""

    kind = "torch"
    auto_reason: str | None = None
    small_passes: tuple[int, ...] = ()  # probe_small_passes sets them

    def __init__(self, module: nn.Module, spec: ModelSpec, device: str = "cpu",
                 precision: str = "fp32", micro_batch: int | None = None) -> None:
        self.device = resolve_device(_int8_device(device) if precision == "int8" else device)
        self.device_type = parse_device(self.device)[0]  # autocast wants "cuda", not "cuda:1"
        if precision == "fp16" and self.device == "cpu":
            raise InputError("fp16 runs on CUDA only; on the CPU use --precision bf16 or fp32")
        self.precision = precision
        self.micro_batch = micro_batch or micro_batch_for(self.device, spec.img_resolution)
        self.module = module.to(self.device).eval()
        self.spec = spec
        self.cast = self.device == "cpu" and precision == "bf16"
        self.runner = self.module
        self.plan: DCGANPlan | None = None
        self.int8: Int8Plan | None = None
        self.calibration: str | None = None  # how the int8 path was calibrated (provenance)
        if precision == "int8":
            folded = copy.deepcopy(self.module)
            fold_batchnorm(folded)  # in fp32, before the calibration and the quantization
            self.int8 = Int8Plan.build(folded, self.micro_batch, spec.z_dim, spec.output_range)
            self.calibration = CALIBRATION
        if self.cast:
            self.runner = copy.deepcopy(self.module)
            fold_batchnorm(self.runner)  # in fp32, before the cast: fewer passes, less rounding
            self.runner = self.runner.to(torch.bfloat16)
            self.runner = self.runner.to(memory_format=torch.channels_last).eval()
            self.plan = DCGANPlan.adopt(self.runner, self.micro_batch, spec.z_dim, spec.output_range)

    @torch.inference_mode()
    def run_images(self, z: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray] | None:
        """uint8 images (rows, H, W, C) of the first `rows` latents of z, and per image whether
        its output was finite, where the DCGAN plan or the int8 plan runs (one table lookup
        instead of the float output and `images.to_uint8`: the same bytes); None elsewhere
        (callers use `run`)."""
        x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
        if self.int8 is not None:
            return self.int8.table.images(self.int8.pre_activation(x)[:rows])
        if self.plan is None:
            return None
        y = self.plan.pre_activation(x.to(torch.bfloat16))
        return self.plan.images(y[:rows])

    @torch.inference_mode()
    def run(self, z: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(self.device)
        if self.int8 is not None:
            y = self.int8.forward(x)
        elif self.plan is not None:
            y = self.plan.forward(x.to(torch.bfloat16))
        elif self.cast:  # z (B, z_dim): the module reshapes it (gan_serve.seam)
            y = self.runner(x.to(torch.bfloat16))
        else:
            with torch.autocast(self.device_type, dtype=_DTYPES[self.precision],
                                enabled=self.precision != "fp32"):
                y = self.runner(x)
        return y.float().cpu().numpy()
