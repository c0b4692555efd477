"""`--precision int8`: the built-in DCGAN generator with its inner deconvolutions in int8, on CPUs
with int8 dot products (AVX512-VNNI, AVX-VNNI or AMX-int8). Opt-in only: never chosen by auto.
On the CPU measured so far (AVX512-VNNI, no AMX) it was not faster than the bf16 default
(0.73-1.12x its CPU time per image) and further from fp32 (BENCHMARKS.md, "int8"); a CPU with
AMX-int8 may gain, and `benchmarks/int8.py` measures it on the machine at hand.

The layers, per micro-batch:
- the first layer (a ConvTranspose2d on the 1x1 latent) is one fp32 matmul with its ReLU, so a
  latent of any size or truncation goes in unclipped; its output is quantized to uint8;
- every inner ConvTranspose2d (kernel 4, stride 2, padding 1) is four int8 matmuls, one per
  output parity (`TAPS`), through oneDNN's `qlinear_pointwise`: uint8 activations per tensor,
  int8 weights per output channel, int32 sums, and the bias, the ReLU and the requantization to
  the next layer's uint8 fused into the matmul;
- the last layer runs in bf16 (a thin layer: int8 gains nothing there, and its output carries
  the pixels' precision), then the output activation and the pixel mapping as one lookup
  (`dcgan_plan.PixelTable`, as on the bf16 path).

torch's own quantized ConvTranspose2d is not used: its oneDNN kernel (torch 2.13) returns
unrelated values wherever in_channels != out_channels, and its fbgemm kernel runs at half the
bf16 rate here (`benchmarks/int8.py --routes`). The activation scales come from a calibration
pass over the latents of `CALIBRATION_SEEDS` (each activation's maximum, after the ranges are
smoothed into the next layer's weights: `_smooth`), so the quantized model is the same on every
load; int8 sums are exact, so its images are the same on every load too, for one machine and
one set of library versions.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedPrecisionError
from ..latents import latents_for_seeds
from .dcgan_plan import PixelTable, _Deconv, _detach, _input_sizes, _layers, _reorder

CALIBRATION_SEEDS = range(256)  # seeds 0-255, recipe v1 latents, psi 1
CALIBRATION = "int8 v2: seeds 0-255, max, SmoothQuant alpha 0.5"  # the provenance's gan_serve.calibration
INT8_INSTRUCTIONS = ("avx512_vnni", "avx_vnni", "amx_int8")  # /proc/cpuinfo (lscpu) flag names
# A ConvTranspose2d of kernel 4, stride 2, padding 1 as four convolutions of kernel 2, one per
# output parity: output row 2m + a sums input rows m + d times kernel rows k, (d, k) in TAPS[a]
# (the same for columns). Each is one matmul of the four shifted inputs side by side.
TAPS = {0: ((0, 1), (-1, 3)), 1: ((0, 2), (1, 0))}


def cpu_flags() -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo (and lscpu) name them; empty where there is none."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def int8_dot_products(flags: set[str] | None = None) -> list[str]:
    """The int8 dot-product instructions this CPU has, by their lscpu names."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in INT8_INSTRUCTIONS if f in flags]


def int8_unsupported(flags: set[str] | None = None) -> str | None:
    """None where this machine runs the int8 path, else why not (one clause)."""
    if not int8_dot_products(flags):
        return "this CPU has no int8 dot products (AVX512-VNNI, AVX-VNNI or AMX-int8)"
    if not hasattr(torch.ops.onednn, "qlinear_pointwise"):
        return f"this torch ({torch.__version__}) has no oneDNN int8 matmul (onednn.qlinear_pointwise)"
    return None


class Int8Plan:
    """A folded fp32 DCGANGenerator as an int8 forward pass; build it with `build`."""

    def __init__(self, layers: list[tuple[nn.ConvTranspose2d, bool]], act: nn.Module,
                 scales: list[float], micro_batch: int, output_range: tuple[float, float]) -> None:
        first, last = layers[0][0], layers[-1][0]
        k = first.kernel_size[0]
        self.first_shape = (k, k, first.out_channels)
        # (z_dim, k*k*out) in (i, j, o) order, so the matmul's output is channels_last
        self.first_weight = first.weight.detach().permute(0, 2, 3, 1).reshape(first.in_channels, -1).clone()
        self.first_bias = _bias(first).repeat(k * k)
        self.in_scale = scales[0]
        outputs = [*scales[1:], None]  # the last int8 layer hands bf16 to the bf16 layer
        self.inner = [_Int8Deconv(conv, scale_in, scale_out)
                      for (conv, _), scale_in, scale_out in zip(layers[1:-1], scales, outputs, strict=True)]
        last = copy.deepcopy(last).to(torch.bfloat16)
        self.last = _Deconv(_reorder(last, micro_batch, _input_sizes(layers)[-1]), _detach(last.bias),
                            last, False)
        self.act = act
        self.table = PixelTable(act, output_range)  # the act on bf16, then the pixels: one lookup

    @classmethod
    def build(cls, module: nn.Module, micro_batch: int, z_dim: int,
              output_range: tuple[float, float]) -> Int8Plan:
        """The int8 plan of `module` (a DCGANGenerator in fp32 with its BatchNorms folded):
        calibrated on `CALIBRATION_SEEDS`, weights quantized per output channel. An
        UnsupportedPrecisionError where this machine or this model cannot run it."""
        if (why := int8_unsupported()) is not None:
            raise UnsupportedPrecisionError(f"--precision int8 cannot run here: {why}; "
                                            "use --precision bf16 or fp32")
        found = _layers(module)
        if found is None or not _int8_shape(found[0]):
            raise UnsupportedPrecisionError(
                "--precision int8 runs the built-in DCGAN generator (a first layer on the 1x1 "
                "latent, then ConvTranspose2d layers of kernel 4, stride 2, padding 1 with ReLU "
                "between them); this model has another shape: use --precision bf16 or fp32")
        layers, act = found
        quantized = layers[:-2]  # the layers whose outputs are uint8
        _smooth(layers, _channel_maxima(quantized, z_dim))
        scales = [_round_up(max(float(m.max()), 1e-8) / 255) for m in _channel_maxima(quantized, z_dim)]
        return cls(layers, act, scales, micro_batch, output_range)

    @torch.inference_mode()
    def pre_activation(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) fp32 -> the last layer's output (B, C, H, W) bf16, channels_last."""
        x = torch.relu(torch.addmm(self.first_bias, z, self.first_weight))
        x = _to_uint8(x.view(len(z), *self.first_shape), self.in_scale)  # (B, k, k, C)
        for layer in self.inner:
            x = layer(x)
        return self.last(x.permute(0, 3, 1, 2))  # NCHW, channels_last in memory

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) fp32 -> the output (B, C, H, W) fp32: the activation on bf16, as `table`
        has it, so `run` and `run_images` give the same pixels."""
        return self.act(self.pre_activation(z)).float()


class _Int8Deconv:
    """One inner layer: uint8 (B, H, W, Cin) at `scale_in` -> ReLU'd (B, 2H, 2W, Cout), uint8 at
    `scale_out`, or bf16 where scale_out is None."""

    def __init__(self, conv: nn.ConvTranspose2d, scale_in: float, scale_out: float | None) -> None:
        w = conv.weight.detach()  # (Cin, Cout, 4, 4)
        self.bias = _bias(conv)
        self.scale_in, self.scale_out = scale_in, scale_out
        self.zero_points = torch.zeros(w.shape[1], dtype=torch.long)
        self.phases = []
        for a in (0, 1):
            for b in (0, 1):
                taps = torch.cat([w[:, :, ky, kx] for _, ky in TAPS[a] for _, kx in TAPS[b]])  # (4Cin, Cout)
                scale = taps.abs().amax(dim=0).clamp_min(1e-12) / 127  # per output channel
                q = torch.round(taps / scale).clamp(-127, 127).to(torch.int8)
                packed = torch.ops.onednn.qlinear_prepack(q.t().contiguous(), None)
                self.phases.append((a, b, packed, scale))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        padded = F.pad(x, (0, 0, 1, 1, 1, 1))
        dtype = torch.uint8 if self.scale_out is not None else torch.bfloat16
        y = torch.empty(n, h, 2, w, 2, len(self.bias), dtype=dtype)
        for a, b, packed, scale in self.phases:
            cols = torch.cat([padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                              for dy, _ in TAPS[a] for dx, _ in TAPS[b]], dim=-1)
            out = torch.ops.onednn.qlinear_pointwise(
                cols.view(n * h * w, 4 * c), self.scale_in, 0, packed, scale, self.zero_points,
                self.bias, self.scale_out or 1.0, 0, dtype, "relu", [None], "")
            y[:, :, a, :, b] = out.view(n, h, w, -1)
        return y.view(n, 2 * h, 2 * w, -1)


def _int8_shape(layers: list[tuple[nn.ConvTranspose2d, bool]]) -> bool:
    """At least three layers, ReLU after every one but the last, and the inner ones the DCGAN
    upsampling (kernel 4, stride 2, padding 1)."""
    inner = [conv for conv, _ in layers[1:-1]]
    return (len(layers) >= 3 and all(relu for _, relu in layers[:-1])
            and all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1)
                    and c.output_padding == (0, 0) and c.dilation == (1, 1) for c in inner))


@torch.inference_mode()
def _channel_maxima(layers: list[tuple[nn.ConvTranspose2d, bool]], z_dim: int) -> list[torch.Tensor]:
    """Each layer's output maximum per channel (fp32, after ReLU) over the calibration latents."""
    x = torch.from_numpy(latents_for_seeds(CALIBRATION_SEEDS, z_dim)).view(-1, z_dim, 1, 1)
    maxima = []
    for conv, _ in layers:
        x = torch.relu(conv(x))
        maxima.append(x.amax(dim=(0, 2, 3)))
    return maxima


@torch.inference_mode()
def _smooth(layers: list[tuple[nn.ConvTranspose2d, bool]], maxima: list[torch.Tensor]) -> None:
    """Moves half of each uint8 activation's per-channel range into the next layer's weights, in
    place (SmoothQuant, alpha 0.5): activations are quantized per tensor, so a channel far below
    the tensor's maximum would keep few levels. Channel c of layer i's output is divided by t_c
    (its weights and bias: ReLU(x / t) = ReLU(x) / t for t > 0, exactly) and layer i+1's input
    channel c multiplied by t_c, with t_c = sqrt(activation max / weight max), so that both meet
    at the same range. On the bundled model: 35.9 dB against fp32, 34.1 without (BENCHMARKS.md)."""
    k = len(maxima)
    for (conv, _), (nxt, _), m in zip(layers[:k], layers[1 : k + 1], maxima, strict=True):
        r = nxt.weight.abs().amax(dim=(1, 2, 3))
        t = torch.sqrt(m / r)
        t = torch.where(torch.isfinite(t) & (t > 0), t, torch.ones_like(t))
        conv.weight.div_(t.view(1, -1, 1, 1))
        if conv.bias is not None:
            conv.bias.div_(t)
        nxt.weight.mul_(t.view(-1, 1, 1, 1))


def _round_up(x: float) -> float:
    mantissa, exponent = math.frexp(x)
    return math.ldexp(math.ceil(mantissa * 256) / 256, exponent)


def _to_uint8(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.round(x * (1 / scale)).clamp_(0, 255).to(torch.uint8)


def _bias(conv: nn.ConvTranspose2d) -> torch.Tensor:
    return (conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)).detach()
